package sms

import (
	"context"
	"errors"
	"fmt"
	"github.com/bubbled/bubbled/connectors/sms/at"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/sms/pdu"
)

// staleCheckInterval is how often incomplete concatenations are checked
// against Config.ReassemblyTimeout.
const staleCheckInterval = 10 * time.Minute

// pruneAge is how long delivered messages are remembered to recognise a
// PDU read twice.
const pruneAge = 30 * 24 * time.Hour

// StartReceiving sets up reception (AT+CSMS=1 if supported, message storage
// via AT+CPMS, new-message indications via AT+CNMI, probing the variants
// the modem accepts), drains messages already stored (AT+CMGL=4), then
// starts the delivery loop, which passes every undelivered message to the
// Handler, oldest first. It returns once storage is drained.
func (l *Line) StartReceiving(ctx context.Context) error {
	if l.handler == nil {
		return errors.New("start receiving SMS: no Handler given to NewLine")
	}
	if _, err := l.current(); err != nil {
		return err
	}
	l.mu.Lock()
	if l.receiving {
		l.mu.Unlock()
		return errors.New("start receiving SMS: already receiving")
	}
	l.receiving = true
	lctx := l.ctx
	l.mu.Unlock()
	req := startRequest{ctx: ctx, reply: make(chan error, 1)}
	select {
	case l.startReq <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-lctx.Done():
		return ErrClosed
	}
	var err error
	select {
	case err = <-req.reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err != nil {
		l.mu.Lock()
		l.receiving = false
		l.mu.Unlock()
		return fmt.Errorf("start receiving SMS: %w", err)
	}
	l.mu.Lock()
	if !l.closed {
		l.wg.Add(1)
		go l.deliverLoop(lctx)
	}
	l.mu.Unlock()
	return nil
}

// run is the Line's main loop: the only goroutine that reads the SIM
// storage and handles unsolicited result codes, so receive processing is
// strictly sequential. It also reopens the port when it is lost.
func (l *Line) run(ctx context.Context, m *at.Session) {
	defer l.wg.Done()
	stale := time.NewTicker(staleCheckInterval)
	defer stale.Stop()
	wd := l.watchdogTimer()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.Closed():
			if ctx.Err() != nil {
				return
			}
			l.log.Warn("lost the modem port")
			l.setState(StateDisconnected, ErrClosed)
			m = l.reconnect(ctx)
			if m == nil {
				return
			}
		case req := <-l.startReq:
			req.reply <- l.setupReceive(req.ctx, m)
		case <-l.urcs:
			for lines := m.NextURC(); lines != nil; lines = m.NextURC() {
				l.handleURC(ctx, m, lines)
			}
		case <-stale.C:
			l.flushStale(ctx)
		case cause := <-l.recoverReq:
			if m = l.recover(ctx, m, cause); m == nil {
				return
			}
		case <-wd:
			if m = l.watchdog(ctx, m); m == nil {
				return
			}
			wd = l.watchdogTimer()
		}
	}
}

// reconnect reopens the port with exponential backoff until it works or
// ctx ends (nil then).
func (l *Line) reconnect(ctx context.Context) *at.Session {
	delay := l.retryBase
	for attempt := 1; ; attempt++ {
		select {
		case <-ctx.Done():
			return nil
		case <-l.after(delay):
		}
		m, err := l.connect(ctx)
		if err == nil {
			l.mu.Lock()
			if l.closed {
				l.mu.Unlock()
				_ = m.Close()
				return nil
			}
			l.m = m
			receiving := l.receiving
			l.mu.Unlock()
			if receiving {
				if err := l.setupReceive(ctx, m); err != nil {
					l.log.Warn("failed to set up reception after reopening the modem", zap.Error(err))
				}
			}
			l.log.Info("reopened modem", zap.Int("attempt", attempt))
			l.setState(StateReady, nil)
			return m
		}
		l.log.Warn("failed to reopen modem", zap.Int("attempt", attempt), zap.Duration("retry_in", delay), zap.Error(err))
		delay = min(delay*2, l.retryMax)
	}
}

// setupReceive configures reception on m and drains the storage.
func (l *Line) setupReceive(ctx context.Context, m *at.Session) error {
	if err := l.ensurePDU(ctx, m); err != nil {
		return err
	}
	if err := l.store.prune(ctx, l.now().Add(-pruneAge)); err != nil {
		l.log.Warn("failed to prune old SMS bookkeeping", zap.Error(err))
	}
	if err := l.store.pruneOutbox(ctx, l.now().Add(-outboxKeep)); err != nil {
		l.log.Warn("failed to prune old outbound SMS", zap.Error(err))
	}
	ack := false
	if _, err := m.Command(ctx, "+CSMS=1", 0); err == nil {
		ack = true
	} else if errors.Is(err, ErrClosed) || ctx.Err() != nil {
		return err
	} else {
		l.log.Info("modem refused AT+CSMS=1; using phase 2 messaging without acknowledgements", zap.Error(err))
	}
	l.mu.Lock()
	l.ackNeeded = ack
	l.mu.Unlock()
	if err := l.chooseStorage(ctx, m); err != nil {
		return err
	}
	if err := l.chooseCNMI(ctx, m); err != nil {
		return err
	}
	// Caller ID for incoming calls (RING + +CLIP), so missed calls name
	// the caller; modems without it still report RING.
	_, clipErr := m.Command(ctx, "+CLIP=1", 0)
	l.call.clip = clipErr == nil
	l.drain(ctx, m)
	l.flushStale(ctx)
	return nil
}

// retrySIMBusy runs fn until it does not fail with "SIM busy" (common for
// a few seconds after the PIN) or about 15 s passed.
func (l *Line) retrySIMBusy(ctx context.Context, fn func() error) error {
	for i := 0; ; i++ {
		err := fn()
		if err == nil || i >= 30 || (at.CMECode(err) != 14 && at.CMSCode(err) != 314) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.after(500 * time.Millisecond):
		}
	}
}

// storagePreference orders the message storages we like: the SIM first
// (every modem has it), then the modem's own memory.
var storagePreference = []string{"SM", "ME", "MT"}

// chooseStorage picks the storage from AT+CPMS=? and selects it for
// reading, writing and receiving.
func (l *Line) chooseStorage(ctx context.Context, m *at.Session) error {
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
		last = l.retrySIMBusy(ctx, func() (err error) {
			info, err = m.Command(ctx, cmd, 0)
			return err
		})
		if last == nil {
			l.log.Info("selected SMS storage", zap.String("storage", mem), zap.Strings("usage", info))
			l.mu.Lock()
			l.mem = mem
			l.mu.Unlock()
			return nil
		}
		if errors.Is(last, ErrClosed) || ctx.Err() != nil {
			return last
		}
	}
	l.log.Warn("modem refused every AT+CPMS; using its default storage", zap.String("wanted", mem), zap.Error(last))
	l.mu.Lock()
	l.mem = ""
	l.mu.Unlock()
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

func (l *Line) chooseCNMI(ctx context.Context, m *at.Session) error {
	var last error
	for _, c := range cnmiCandidates(l.cfg.StatusReports) {
		_, err := m.Command(ctx, "+CNMI="+c, 0)
		if err == nil {
			l.log.Info("enabled new message indications", zap.String("cnmi", c), zap.Bool("direct", strings.Split(c, ",")[1] == "2"))
			l.mu.Lock()
			l.cnmi = c
			l.mu.Unlock()
			return nil
		}
		if errors.Is(err, ErrClosed) || ctx.Err() != nil {
			return err
		}
		l.log.Debug("modem refused a +CNMI setting", zap.String("cnmi", c), zap.Error(err))
		last = err
	}
	return fmt.Errorf("the modem refused every AT+CNMI setting bubbled knows (%s): %w", strings.Join(cnmiCandidates(l.cfg.StatusReports), " "), last)
}

// drain processes every message in the storage (AT+CMGL=4).
func (l *Line) drain(ctx context.Context, m *at.Session) {
	info, err := m.Command(ctx, "+CMGL=4", max(l.cfg.CommandTimeout, 30*time.Second))
	if err != nil {
		l.log.Warn("failed to list stored SMS", zap.Error(err))
		return
	}
	entries := parseCMGL(info)
	if len(entries) > 0 {
		l.log.Info("found stored SMS", zap.Int("count", len(entries)))
	}
	for _, e := range entries {
		l.processStored(ctx, m, "cmgl", e.index, e.stat, e.pdu)
	}
}

func (l *Line) flushStale(ctx context.Context) {
	ids, err := l.store.flushStale(ctx, l.now().Add(-l.cfg.ReassemblyTimeout))
	if err != nil {
		l.log.Warn("failed to flush incomplete SMS", zap.Error(err))
	}
	if len(ids) > 0 {
		l.log.Warn("delivered incomplete concatenated SMS after the reassembly timeout", zap.Strings("ids", ids))
		l.wake()
	}
}

// handleURC processes one unsolicited result code with its trailing lines.
func (l *Line) handleURC(ctx context.Context, m *at.Session, lines []string) {
	head := lines[0]
	switch {
	case strings.HasPrefix(head, "+CMTI:"), strings.HasPrefix(head, "+CDSI:"):
		v := strings.TrimSpace(head[strings.IndexByte(head, ':')+1:])
		p := at.SplitParams(v)
		if len(p) < 2 {
			l.log.Debug("ignored malformed indication", zap.String("line", head))
			return
		}
		idx, err := strconv.Atoi(p[1])
		if err != nil {
			l.log.Debug("ignored malformed indication", zap.String("line", head))
			return
		}
		l.readStored(ctx, m, p[0], idx)
	case strings.HasPrefix(head, "+CUSD:"):
		l.handleCUSD(ctx, m, head)
	case head == "RING", strings.HasPrefix(head, "+CLIP:"):
		l.handleRing(ctx, m, head)
	case strings.HasPrefix(head, "+CMT:"), strings.HasPrefix(head, "+CDS:"):
		if len(lines) < 2 {
			l.log.Debug("ignored indication without PDU", zap.String("line", head))
			return
		}
		ok := l.processPDU(ctx, "cmt", -1, strings.TrimSpace(lines[1]))
		l.ack(ctx, m, ok)
	default:
		l.log.Debug("ignored unsolicited line", zap.String("line", head))
	}
}

// ack acknowledges a directly routed message (+CMT/+CDS) when AT+CSMS=1 is
// on: RP-ACK after it is persisted, RP-ERROR otherwise so the network
// retries later. Without acks the modem would stop routing messages to us.
func (l *Line) ack(ctx context.Context, m *at.Session, ok bool) {
	l.mu.Lock()
	need := l.ackNeeded
	l.mu.Unlock()
	if !need {
		return
	}
	cmd := "+CNMA"
	if !ok {
		cmd = "+CNMA=2"
	}
	if _, err := m.Command(ctx, cmd, 0); err != nil {
		l.log.Warn("failed to acknowledge SMS", zap.String("cmd", "AT"+cmd), zap.Error(err))
	}
}

// readStored reads, persists and deletes the message at index idx of
// storage mem.
func (l *Line) readStored(ctx context.Context, m *at.Session, mem string, idx int) {
	l.mu.Lock()
	cur := l.mem
	l.mu.Unlock()
	if mem != "" && cur != "" && mem != cur {
		if _, err := m.Command(ctx, `+CPMS="`+mem+`"`, 0); err != nil {
			l.log.Warn("failed to switch storage to read a new SMS", zap.String("storage", mem), zap.Int("index", idx), zap.Error(err))
			return
		}
		defer func() {
			if _, err := m.Command(ctx, `+CPMS="`+cur+`"`, 0); err != nil {
				l.log.Warn("failed to switch storage back", zap.String("storage", cur), zap.Error(err))
			}
		}()
	}
	info, err := m.Command(ctx, "+CMGR="+strconv.Itoa(idx), 0)
	if err != nil {
		if at.CMSCode(err) == 321 {
			l.log.Debug("found no SMS at index (already read)", zap.Int("index", idx))
			return
		}
		l.log.Warn("failed to read SMS; it stays stored and is read at the next start", zap.Int("index", idx), zap.Error(err))
		return
	}
	entries := parseCMGR(info)
	if len(entries) == 0 {
		l.log.Debug("found no SMS at index (already read)", zap.Int("index", idx))
		return
	}
	l.processStored(ctx, m, "cmgr", idx, entries[0].stat, entries[0].pdu)
}

// processStored handles one message read from storage and deletes it once
// it is safely persisted. Sent and unsent SUBMITs stay untouched.
func (l *Line) processStored(ctx context.Context, m *at.Session, source string, idx, stat int, hexPDU string) {
	if stat == 2 || stat == 3 {
		l.log.Debug("skipped stored outgoing SMS", zap.Int("index", idx), zap.Int("stat", stat))
		return
	}
	if msg, err := pdu.Decode(hexPDU, true); err == nil && msg.Type == pdu.Submit {
		l.log.Debug("skipped stored SMS-SUBMIT", zap.Int("index", idx))
		return
	}
	if !l.processPDU(ctx, source, idx, hexPDU) {
		return
	}
	if _, err := m.Command(ctx, "+CMGD="+strconv.Itoa(idx), 0); err != nil {
		l.log.Warn("failed to delete SMS from storage (it is saved; it will be recognised if read again)", zap.Int("index", idx), zap.Error(err))
	}
}

// processPDU decodes and persists one received PDU. It reports whether the
// PDU is safely in the database (or needs no keeping), i.e. whether it may
// be deleted from storage or acknowledged.
func (l *Line) processPDU(ctx context.Context, source string, idx int, hexPDU string) bool {
	msg, err := pdu.Decode(hexPDU, true)
	if err != nil {
		l.log.Warn("failed to decode received PDU; keeping it in bubbled_sms_bad_pdu",
			zap.String("source", source), zap.Int("index", idx), zap.String("pdu", hexPDU), zap.Error(err))
		return l.keepBad(ctx, source, idx, hexPDU, "decode: "+err.Error())
	}
	switch msg.Type {
	case pdu.StatusReport:
		l.log.Info("received status report", zap.Int("mr", msg.MR), zap.Uint8("status", msg.Status),
			zap.String("recipient", maskNumber(msg.Address)), zap.Time("discharge", msg.Discharge))
		res, err := l.store.statusReport(ctx, msg)
		if err != nil {
			l.log.Error("failed to store status report; leaving it on the modem", zap.Int("index", idx), zap.Error(err))
			return false
		}
		if !res.matched {
			l.log.Info("kept status report that matches no sent SMS part yet", zap.Int("mr", msg.MR))
			if !l.keepBad(ctx, source, idx, hexPDU, fmt.Sprintf("status report for MR %d matches no sent part", msg.MR)) {
				return false
			}
			l.rematchLater(msg, hexPDU)
			return true
		}
		if res.outcome != "" {
			l.log.Info("confirmed SMS by status report", zap.String("id", res.msgID), zap.String("outcome", string(res.outcome)))
			l.wakeOutcomes()
		}
		return true
	case pdu.Submit:
		// A SUBMIT routed to us is not a message for the user.
		return true
	}
	if msg.Alphabet == pdu.EightBit {
		l.log.Info("kept 8-bit data SMS unread (WAP push or similar)", zap.String("from", maskNumber(msg.Address)), zap.Int("index", idx))
		return l.keepBad(ctx, source, idx, hexPDU, "8-bit data message (not text)")
	}
	res, err := l.store.saveDeliver(ctx, msg, hexPDU)
	if errors.Is(err, errConcatCollision) {
		l.log.Warn("kept SMS part that collides with another message", zap.String("from", maskNumber(msg.Address)), zap.Int("index", idx))
		return l.keepBad(ctx, source, idx, hexPDU, err.Error())
	}
	if err != nil {
		l.log.Error("failed to store received SMS; leaving it on the modem", zap.Int("index", idx), zap.Error(err))
		return false
	}
	switch {
	case res.duplicate && res.id != "":
		l.log.Debug("recognised an SMS read before", zap.String("id", res.id), zap.Int("index", idx))
	case res.id != "":
		l.log.Info("received SMS", zap.String("id", res.id), zap.String("from", maskNumber(msg.Address)), zap.String("source", source))
		l.log.Debug("received SMS text", zap.String("id", res.id), zap.String("from", msg.Address), zap.String("text", msg.Text))
		l.wake()
	default:
		l.log.Info("received SMS part", zap.String("from", maskNumber(msg.Address)),
			zap.Int("have", res.partial), zap.Int("total", int(msg.Concat.Total)))
	}
	return true
}

func (l *Line) keepBad(ctx context.Context, source string, idx int, hexPDU, reason string) bool {
	if err := l.store.saveBad(ctx, source, idx, hexPDU, reason); err != nil {
		l.log.Error("failed to store unusable PDU; leaving it on the modem", zap.Int("index", idx), zap.Error(err))
		return false
	}
	return true
}

// rematchReport waits are the pauses before a status report that matched
// no part is matched again.
var rematchReportWaits = []time.Duration{200 * time.Millisecond, time.Second, 5 * time.Second}

// rematchLater matches a status report again a little later. A fast network
// can report on a part in the instant between the modem's +CMGS answer and
// the outbox's write of that part's MR; the report is already kept as a bad
// PDU (so acknowledging it lost nothing) and is taken out of there once it
// matches. The goroutine belongs to the Line and ends with Close.
func (l *Line) rematchLater(msg *pdu.Message, hexPDU string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.ctx == nil {
		return
	}
	ctx := l.ctx
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for _, wait := range rematchReportWaits {
			select {
			case <-ctx.Done():
				return
			case <-l.after(wait):
			}
			res, err := l.store.statusReport(ctx, msg)
			if err != nil || !res.matched {
				continue
			}
			l.log.Info("matched a status report on a second look", zap.Int("mr", msg.MR), zap.String("id", res.msgID))
			if err := l.store.forgetBad(ctx, hexPDU); err != nil {
				l.log.Warn("failed to drop a matched status report from the bad PDUs", zap.Error(err))
			}
			if res.outcome != "" {
				l.wakeOutcomes()
			}
			return
		}
	}()
}

// wake nudges the delivery loop.
func (l *Line) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// deliverLoop passes undelivered messages to the Handler, oldest first; a
// failure holds back the rest and retries with exponential backoff.
func (l *Line) deliverLoop(ctx context.Context) {
	defer l.wg.Done()
	var retry <-chan time.Time
	failures := 0
	l.wake()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		case <-retry:
		}
		err := l.deliverPending(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failures, retry = 0, nil
			continue
		}
		delay := min(l.retryBase<<min(failures, 20), l.retryMax)
		failures++
		l.log.Warn("failed to hand SMS to the bridge; will retry", zap.Duration("retry_in", delay), zap.Error(err))
		retry = l.after(delay)
	}
}

// deliverPending hands every undelivered message to the Handler in order
// and stops at the first failure.
func (l *Line) deliverPending(ctx context.Context) error {
	msgs, err := l.store.undelivered(ctx)
	if err != nil {
		return err
	}
	for _, msg := range msgs {
		if err := l.handler(ctx, msg); err != nil {
			return fmt.Errorf("handle SMS %s: %w", msg.ID, err)
		}
		if err := l.store.markDelivered(ctx, msg.ID); err != nil {
			return err
		}
	}
	return nil
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
