package sms

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/connectors/sms/at"
	"github.com/bubbled/bubbled/connectors/sms/pdu"
)

// pruneAge is how long delivered messages are remembered to recognise a
// PDU read twice.
const pruneAge = 30 * 24 * time.Hour

// inbox is the receiving concern of a Line: reception set-up (+CSMS,
// +CPMS, +CNMI), +CMTI/+CMT handling, reading and deleting storage,
// reassembly and persistence (store.go), and the delivery pump that hands
// complete messages to the Handler. Everything but the pump runs on the
// run loop. Status reports found among received PDUs go to the outbox.
type inbox struct {
	*link
	// delivered is the mailbox of complete messages for the Handler.
	delivered *mailbox[*Message]
	// pushes is the mailbox of complete WAP pushes for the PushHandler.
	pushes *mailbox[*Push]
	// report takes a received status report (see outbox.handleReport).
	report func(ctx context.Context, msg *pdu.Message, source string, idx int, hexPDU string) bool

	// receiving is set by StartReceiving (any goroutine).
	receiving atomic.Bool

	// Owned by the run loop, the only goroutine that sets reception up
	// and reads storage.
	ackNeeded bool   // AT+CSMS=1 accepted: +CMT/+CDS need AT+CNMA
	mem       string // message storage in use ("" = modem default)
	cnmi      string // accepted AT+CNMI setting
}

func newInbox(k *link, h Handler, report func(context.Context, *pdu.Message, string, int, string) bool) *inbox {
	in := &inbox{link: k, report: report}
	in.delivered = newMailbox(k, "SMS", h, func(ctx context.Context) ([]*Message, error) { return k.store.undelivered(ctx) },
		func(ctx context.Context, m *Message) error { return k.store.markDelivered(ctx, m.ID) },
		func(m *Message) string { return "SMS " + m.ID }).withLanes(k.cfg.InboundLanes, func(m *Message) string { return senderKey(m.From) })
	in.pushes = newMailbox(k, "WAP push", nil, func(ctx context.Context) ([]*Push, error) { return k.store.undeliveredPushes(ctx) },
		func(ctx context.Context, p *Push) error { return k.store.markPushDelivered(ctx, p.ID) },
		func(p *Push) string { return "WAP push " + p.ID })
	return in
}

// start starts the delivery pump; stop ends it.
func (in *inbox) start(ctx context.Context) {
	in.delivered.start(ctx)
	in.pushes.start(ctx)
}

// stop ends the delivery pump and waits for it.
func (in *inbox) stop() {
	in.delivered.stop()
	in.pushes.stop()
}

// setReceiving sets the receiving flag and reports whether it changed.
func (in *inbox) setReceiving(on bool) bool {
	return in.receiving.CompareAndSwap(!on, on)
}

func (in *inbox) isReceiving() bool {
	return in.receiving.Load()
}

// wake nudges the delivery pump.
func (in *inbox) wake() {
	in.delivered.wake()
	in.pushes.wake()
}

// prune forgets old bookkeeping of delivered messages.
func (in *inbox) prune(ctx context.Context) {
	if err := in.store.prune(ctx, in.clock.Now().Add(-pruneAge)); err != nil {
		in.log.Warn("failed to prune old SMS bookkeeping", zap.Error(err))
	}
}

// configure enables acknowledgements (+CSMS=1), chooses the storage and
// the new-message indications.
func (in *inbox) configure(ctx context.Context, m *at.Session) error {
	ack := false
	if _, err := m.Command(ctx, "+CSMS=1", 0); err == nil {
		ack = true
	} else if errors.Is(err, ErrClosed) || ctx.Err() != nil {
		return err
	} else {
		in.log.Info("modem refused AT+CSMS=1; using phase 2 messaging without acknowledgements", zap.Error(err))
	}
	in.ackNeeded = ack
	if err := in.chooseStorage(ctx, m); err != nil {
		return err
	}
	return in.chooseCNMI(ctx, m)
}

// handleIndication reads the message a +CMTI/+CDSI announces.
func (in *inbox) handleIndication(ctx context.Context, m *at.Session, head string) {
	p := at.SplitParams(head[strings.IndexByte(head, ':')+1:])
	if len(p) < 2 {
		in.log.Debug("ignored malformed indication", zap.String("line", head))
		return
	}
	idx, err := strconv.Atoi(p[1])
	if err != nil {
		in.log.Debug("ignored malformed indication", zap.String("line", head))
		return
	}
	in.readStored(ctx, m, p[0], idx)
}

// handleDirect persists a directly routed +CMT/+CDS and acknowledges it.
func (in *inbox) handleDirect(ctx context.Context, m *at.Session, lines []string) {
	if len(lines) < 2 {
		in.log.Debug("ignored indication without PDU", zap.String("line", lines[0]))
		return
	}
	ok := in.processPDU(ctx, "cmt", -1, strings.TrimSpace(lines[1]))
	in.ack(ctx, m, ok)
}

// retrySIMBusy runs fn until it does not fail with "SIM busy" (common for
// a few seconds after the PIN) or about 15 s passed.
func (in *inbox) retrySIMBusy(ctx context.Context, fn func() error) error {
	for i := 0; ; i++ {
		err := fn()
		if err == nil || i >= 30 || (at.CMECode(err) != 14 && at.CMSCode(err) != 314) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-in.after(500 * time.Millisecond):
		}
	}
}

// storagePreference orders the message storages we like: the SIM first
// (every modem has it), then the modem's own memory.
var storagePreference = []string{"SM", "ME", "MT"}

// chooseStorage picks the storage from AT+CPMS=? and selects it for
// reading, writing and receiving.
func (in *inbox) chooseStorage(ctx context.Context, m *at.Session) error {
	var lists [][]string
	if info, err := m.Command(ctx, "+CPMS=?", 0); err == nil {
		for _, line := range info {
			if v, ok := strings.CutPrefix(line, "+CPMS:"); ok {
				lists = at.ParseLists(v)
			}
		}
	} else if errors.Is(err, ErrClosed) || ctx.Err() != nil {
		return err
	}
	mem := pickStorage(lists)
	attempts := []string{
		fmt.Sprintf(`+CPMS="%s","%s","%s"`, mem, mem, mem),
		fmt.Sprintf(`+CPMS="%s","%s"`, mem, mem),
		fmt.Sprintf(`+CPMS="%s"`, mem),
	}
	var last error
	for _, cmd := range attempts {
		var info []string
		last = in.retrySIMBusy(ctx, func() (err error) {
			info, err = m.Command(ctx, cmd, 0)
			return err
		})
		if last == nil {
			in.log.Info("selected SMS storage", zap.String("storage", mem), zap.Strings("usage", info))
			in.mem = mem
			return nil
		}
		if errors.Is(last, ErrClosed) || ctx.Err() != nil {
			return last
		}
	}
	in.log.Warn("modem refused every AT+CPMS; using its default storage", zap.String("wanted", mem), zap.Error(last))
	in.mem = ""
	return nil
}

// pickStorage chooses a storage usable for reading (list 1) and receiving
// (list 3, or 1 when absent).
func pickStorage(lists [][]string) string {
	if len(lists) == 0 {
		return "SM"
	}
	recv := lists[0]
	if len(lists) >= 3 {
		recv = lists[2]
	}
	has := func(l []string, s string) bool {
		for _, v := range l {
			if v == s {
				return true
			}
		}
		return false
	}
	for _, s := range storagePreference {
		if has(lists[0], s) && has(recv, s) {
			return s
		}
	}
	for _, s := range lists[0] {
		if has(recv, s) {
			return s
		}
	}
	if len(lists[0]) > 0 {
		return lists[0][0]
	}
	return "SM"
}

// cnmiCandidates lists the +CNMI settings to try, best first: store and
// notify (+CMTI) keeps a message on the SIM until we delete it after
// persisting; direct delivery (+CMT) is the fallback. <ds>=1 routes status
// reports as +CDS when wanted; each setting is retried with <ds>=0.
func cnmiCandidates(statusReports bool) []string {
	var out []string
	for _, mt := range []string{"2,1", "1,1", "2,2", "1,2"} {
		if statusReports {
			// +CDS first; else stored reports announced with +CDSI.
			out = append(out, mt+",0,1,0", mt+",0,2,0")
		}
		out = append(out, mt+",0,0,0")
	}
	return out
}

func (in *inbox) chooseCNMI(ctx context.Context, m *at.Session) error {
	var last error
	for _, c := range cnmiCandidates(in.cfg.StatusReports) {
		_, err := m.Command(ctx, "+CNMI="+c, 0)
		if err == nil {
			in.log.Info("enabled new message indications", zap.String("cnmi", c), zap.Bool("direct", strings.Split(c, ",")[1] == "2"))
			in.cnmi = c
			return nil
		}
		if errors.Is(err, ErrClosed) || ctx.Err() != nil {
			return err
		}
		in.log.Debug("modem refused a +CNMI setting", zap.String("cnmi", c), zap.Error(err))
		last = err
	}
	return fmt.Errorf("the modem refused every AT+CNMI setting bubbled knows (%s): %w", strings.Join(cnmiCandidates(in.cfg.StatusReports), " "), last)
}

// drain processes every message in the storage (AT+CMGL=4).
func (in *inbox) drain(ctx context.Context, m *at.Session) {
	info, err := m.Command(ctx, "+CMGL=4", max(in.cfg.CommandTimeout, 30*time.Second))
	if err != nil {
		in.log.Warn("failed to list stored SMS", zap.Error(err))
		return
	}
	entries := parseCMGL(info)
	if len(entries) > 0 {
		in.log.Info("found stored SMS", zap.Int("count", len(entries)))
	}
	for _, e := range entries {
		in.processStored(ctx, m, "cmgl", e.index, e.stat, e.pdu)
	}
}

func (in *inbox) flushStale(ctx context.Context) {
	ids, err := in.store.flushStale(ctx, in.clock.Now().Add(-in.cfg.ReassemblyTimeout))
	if err != nil {
		in.log.Warn("failed to flush incomplete SMS", zap.Error(err))
	}
	if len(ids) > 0 {
		in.log.Warn("delivered incomplete concatenated SMS after the reassembly timeout", zap.Strings("ids", ids))
		in.wake()
	}
}

// ack acknowledges a directly routed message (+CMT/+CDS) when AT+CSMS=1 is
// on: RP-ACK after it is persisted, RP-ERROR otherwise so the network
// retries later. Without acks the modem would stop routing messages to us.
func (in *inbox) ack(ctx context.Context, m *at.Session, ok bool) {
	need := in.ackNeeded
	if !need {
		return
	}
	cmd := "+CNMA"
	if !ok {
		cmd = "+CNMA=2"
	}
	if _, err := m.Command(ctx, cmd, 0); err != nil {
		in.log.Warn("failed to acknowledge SMS", zap.String("cmd", "AT"+cmd), zap.Error(err))
	}
}

// readStored reads, persists and deletes the message at index idx of
// storage mem.
func (in *inbox) readStored(ctx context.Context, m *at.Session, mem string, idx int) {
	cur := in.mem
	if mem != "" && cur != "" && mem != cur {
		if _, err := m.Command(ctx, `+CPMS="`+mem+`"`, 0); err != nil {
			in.log.Warn("failed to switch storage to read a new SMS", zap.String("storage", mem), zap.Int("index", idx), zap.Error(err))
			return
		}
		defer func() {
			if _, err := m.Command(ctx, `+CPMS="`+cur+`"`, 0); err != nil {
				in.log.Warn("failed to switch storage back", zap.String("storage", cur), zap.Error(err))
			}
		}()
	}
	info, err := m.Command(ctx, "+CMGR="+strconv.Itoa(idx), 0)
	if err != nil {
		if at.CMSCode(err) == 321 {
			in.log.Debug("found no SMS at index (already read)", zap.Int("index", idx))
			return
		}
		in.log.Warn("failed to read SMS; it stays stored and is read at the next start", zap.Int("index", idx), zap.Error(err))
		return
	}
	entries := parseCMGR(info)
	if len(entries) == 0 {
		in.log.Debug("found no SMS at index (already read)", zap.Int("index", idx))
		return
	}
	in.processStored(ctx, m, "cmgr", idx, entries[0].stat, entries[0].pdu)
}

// processStored handles one message read from storage and deletes it once
// it is safely persisted. Sent and unsent SUBMITs stay untouched.
func (in *inbox) processStored(ctx context.Context, m *at.Session, source string, idx, stat int, hexPDU string) {
	if stat == 2 || stat == 3 {
		in.log.Debug("skipped stored outgoing SMS", zap.Int("index", idx), zap.Int("stat", stat))
		return
	}
	if msg, err := pdu.Decode(hexPDU, true); err == nil && msg.Type == pdu.Submit {
		in.log.Debug("skipped stored SMS-SUBMIT", zap.Int("index", idx))
		return
	}
	if !in.processPDU(ctx, source, idx, hexPDU) {
		return
	}
	if _, err := m.Command(ctx, "+CMGD="+strconv.Itoa(idx), 0); err != nil {
		in.log.Warn("failed to delete SMS from storage (it is saved; it will be recognised if read again)", zap.Int("index", idx), zap.Error(err))
	}
}

// processPDU decodes and persists one received PDU. It reports whether the
// PDU is safely in the database (or needs no keeping), i.e. whether it may
// be deleted from storage or acknowledged.
func (in *inbox) processPDU(ctx context.Context, source string, idx int, hexPDU string) bool {
	msg, err := pdu.Decode(hexPDU, true)
	if err != nil {
		in.log.Warn("failed to decode received PDU; keeping it in bubbled_sms_bad_pdu",
			append(pduFields(hexPDU), zap.String("source", source), zap.Int("index", idx), zap.Error(err))...)
		return in.keepBad(ctx, source, idx, hexPDU, "decode: "+err.Error())
	}
	switch msg.Type {
	case pdu.StatusReport:
		return in.report(ctx, msg, source, idx, hexPDU)
	case pdu.Submit:
		// A SUBMIT routed to us is not a message for the user.
		return true
	}
	if msg.Alphabet == pdu.EightBit && !isWAPPush(msg) {
		in.log.Info("kept 8-bit data SMS unread (WAP push or similar)", zap.String("from", phone.Mask(msg.Address)), zap.Int("index", idx))
		return in.keepBad(ctx, source, idx, hexPDU, "8-bit data message (not text)")
	}
	res, err := in.store.saveDeliver(ctx, msg, hexPDU)
	if errors.Is(err, errConcatCollision) {
		in.log.Warn("kept SMS part that collides with another message", zap.String("from", phone.Mask(msg.Address)), zap.Int("index", idx))
		return in.keepBad(ctx, source, idx, hexPDU, err.Error())
	}
	if err != nil {
		in.log.Error("failed to store received SMS; leaving it on the modem", zap.Int("index", idx), zap.Error(err))
		return false
	}
	switch {
	case res.duplicate && res.id != "":
		in.log.Debug("recognised an SMS read before", zap.String("id", res.id), zap.Int("index", idx))
	case res.id != "":
		in.log.Info("received SMS", zap.String("id", res.id), zap.String("from", phone.Mask(msg.Address)), zap.String("source", source))
		in.log.Debug("received SMS text", zap.String("id", res.id), zap.String("from", msg.Address), zap.String("text", msg.Text))
		in.wake()
	default:
		in.log.Info("received SMS part", zap.String("from", phone.Mask(msg.Address)),
			zap.Int("have", res.partial), zap.Int("total", int(msg.Concat.Total)))
	}
	return true
}

// cmglEntry is one message of a +CMGL/+CMGR answer.
type cmglEntry struct {
	index, stat int
	pdu         string
}

// parseCMGL reads "+CMGL: <index>,<stat>,[<alpha>],<length>" header lines
// each followed by a PDU line; unexpected lines are skipped.
func parseCMGL(info []string) []cmglEntry {
	var out []cmglEntry
	for i := 0; i < len(info); i++ {
		v, ok := strings.CutPrefix(info[i], "+CMGL:")
		if !ok {
			continue
		}
		p := at.SplitParams(v)
		if len(p) < 2 || i+1 >= len(info) || !at.IsHex(info[i+1]) {
			continue
		}
		idx, err1 := strconv.Atoi(p[0])
		stat, err2 := strconv.Atoi(p[1])
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, cmglEntry{index: idx, stat: stat, pdu: strings.TrimSpace(info[i+1])})
		i++
	}
	return out
}

// parseCMGR reads "+CMGR: <stat>,[<alpha>],<length>" and the PDU line.
func parseCMGR(info []string) []cmglEntry {
	for i := 0; i+1 < len(info); i++ {
		v, ok := strings.CutPrefix(info[i], "+CMGR:")
		if !ok {
			continue
		}
		p := at.SplitParams(v)
		stat, err := strconv.Atoi(p[0])
		if err != nil || !at.IsHex(info[i+1]) {
			continue
		}
		return []cmglEntry{{index: -1, stat: stat, pdu: strings.TrimSpace(info[i+1])}}
	}
	return nil
}

// checkRouting re-applies our +CNMI setting when the modem dropped it
// (27.005: a missed +CNMA makes the modem set <mt> and <ds> to 0, silently
// storing new messages), then drains what was stored meanwhile. Care calls
// it from the watchdog and after a recovery.
func (in *inbox) checkRouting(ctx context.Context, m *at.Session) {
	want, receiving := in.cnmi, in.receiving.Load()
	if !receiving || want == "" {
		return
	}
	info, err := m.Command(ctx, "+CNMI?", 0)
	if err != nil {
		in.log.Debug("failed to read AT+CNMI?", zap.Error(err))
		return
	}
	var got string
	for _, line := range info {
		if v, ok := strings.CutPrefix(line, "+CNMI:"); ok {
			got = strings.TrimSpace(v)
		}
	}
	if got == "" || sameRouting(got, want) {
		return
	}
	in.log.Warn("found SMS routing dropped by the modem; re-applying it", zap.String("cnmi", got), zap.String("want", want))
	if _, err := m.Command(ctx, "+CNMI="+want, 0); err != nil {
		in.log.Error("failed to re-apply AT+CNMI", zap.Error(err))
		return
	}
	in.drain(ctx, m)
}

// sameRouting compares the <mt> and <ds> fields of two +CNMI settings.
func sameRouting(got, want string) bool {
	g, w := at.SplitParams(got), at.SplitParams(want)
	if len(g) < 4 || len(w) < 4 {
		return got == want
	}
	return g[1] == w[1] && g[3] == w[3]
}

// pduFields describe a PDU in a line logged at info or warn without its
// content: the sender's number and the text are in it, in semi-octets no
// log mask recognises. They give its length in bytes and the first 12 hex
// digits of the SHA-256 of its hex form as received, which finds it in
// bubbled_sms_bad_pdu (the full PDU is kept there, not in the log).
func pduFields(hexPDU string) []zap.Field {
	sum := sha256.Sum256([]byte(hexPDU))
	return []zap.Field{zap.Int("pdu_bytes", len(hexPDU)/2), zap.String("pdu_sha256", hex.EncodeToString(sum[:6]))}
}

// senderKey is the inbound mailbox's lane of a sender: the last 9 digits of
// a number, so that one number written nationally and internationally
// ("07700 900123", "+447700900123") shares a lane, or a sender name's
// letters and digits in lower case. Two senders with the same key share a
// lane: their order is kept, only their parallelism is lost.
func senderKey(from string) string {
	var b strings.Builder
	digits := true
	for _, r := range strings.ToLower(from) {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r >= 'a' && r <= 'z':
			b.WriteRune(r)
			digits = false
		}
	}
	key := b.String()
	if digits && len(key) > 9 {
		key = key[len(key)-9:]
	}
	return key
}
