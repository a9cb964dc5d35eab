package sms

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf16"

	"github.com/warthog618/sms/encoding/gsm7"
	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/connectors/sms/at"
)

// extras is the concern of a Line for what is not SMS: USSD, incoming
// calls (recorded, hung up, handed over by the call pump) and the modem's
// status. Its goroutine, the call pump, starts with start and ends with
// stop; the URC handlers run on the run loop.
type extras struct {
	*link
	// calls is the mailbox of incoming calls for the CallHandler.
	calls *mailbox[Call]

	mu        sync.Mutex     // guards the fields below
	ussdReply chan ussdReply // the reply channel of the USSD request in flight, if any

	// call is owned by the run loop.
	call callState
}

func newExtras(k *link) *extras {
	x := &extras{link: k}
	x.calls = newMailbox(k, "incoming call", k.cfg.OnCall, k.store.pendingCalls,
		func(ctx context.Context, c Call) error { return k.store.markCallHanded(ctx, c.Seq) },
		func(c Call) string { return "call " + c.ID })
	return x
}

// start starts the call pump.
func (x *extras) start(ctx context.Context) { x.calls.start(ctx) }

// stop ends the call pump and waits for it.
func (x *extras) stop() { x.calls.stop() }

// ModemStatus describes the modem, its SIM and its network for a status
// command. Fields the modem did not answer stay zero.
type ModemStatus struct {
	// State is the line's connection state.
	State State
	// SIM is the +CPIN? state: "READY", "SIM PIN", "SIM PUK", ...
	SIM string
	// Manufacturer, Model and Revision come from +CGMI, +CGMM, +CGMR.
	Manufacturer, Model, Revision string
	// IMEI is the modem's serial number (+CGSN) with all but the last four
	// digits masked.
	IMEI string
	// Operator is the network name from +COPS?.
	Operator string
	// Registered is true when registered on the home network or roaming.
	Registered bool
	// Registration words the +CREG?/+CEREG? state.
	Registration string
	// RSSI is the +CSQ value 0-31 (99 = unknown).
	RSSI int
	// SignalDBm is the received signal strength (-113 to -51), 0 when
	// unknown.
	SignalDBm int
	// SignalBars is 0-4 like a phone's signal indicator.
	SignalBars int
	// SMSC is the service centre number from +CSCA?.
	SMSC string
	// QueueLength is the number of outbound messages not sent yet.
	QueueLength int
	// LastRecovery is the rung that fixed the modem the last time.
	LastRecovery RecoveryStep
}

// status implements Line.Status.
func (x *extras) status(ctx context.Context, last RecoveryStep) (*ModemStatus, error) {
	m, err := x.current()
	if err != nil {
		return nil, err
	}
	st := &ModemStatus{State: x.currentState(), RSSI: 99, LastRecovery: last}
	st.QueueLength, _ = x.store.queueLength(ctx)
	if err := x.readStatus(ctx, m, st); err != nil {
		return nil, err
	}
	return st, nil
}

// readStatus fills st from the modem: SIM, identity, operator,
// registration, signal and SMSC. Only a lost or silent modem is an error;
// what the modem refuses stays zero.
func (k *link) readStatus(ctx context.Context, m *at.Session, st *ModemStatus) error {
	first := func(cmd string) (string, error) {
		info, err := m.Command(ctx, cmd, 0)
		if err != nil {
			return "", err
		}
		for _, line := range info {
			if line = strings.TrimSpace(line); line != "" {
				return line, nil
			}
		}
		return "", nil
	}
	fatal := func(err error) bool {
		return errors.Is(err, ErrClosed) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnresponsive) || ctx.Err() != nil
	}
	if s, err := k.pinStatus(ctx, m); err == nil {
		st.SIM = s
	} else if fatal(err) {
		return fmt.Errorf("read modem status: %w", err)
	}
	for _, f := range []struct {
		cmd string
		dst *string
	}{{"+CGMI", &st.Manufacturer}, {"+CGMM", &st.Model}, {"+CGMR", &st.Revision}, {"+CGSN", &st.IMEI}} {
		v, err := first(f.cmd)
		if fatal(err) {
			return fmt.Errorf("read modem status: %w", err)
		}
		*f.dst = strings.TrimSpace(strings.TrimPrefix(v, f.cmd[1:]+":"))
	}
	st.IMEI = maskIMEI(st.IMEI)
	if v, err := first("+COPS?"); err == nil {
		if p := at.SplitParams(strings.TrimPrefix(v, "+COPS:")); len(p) >= 3 {
			st.Operator = p[2]
		}
	}
	reg, known := registration(ctx, m)
	if known {
		st.Registered = reg == 1 || reg == 5
		st.Registration = regName(reg)
	} else {
		st.Registration = "unknown"
	}
	if v, err := first("+CSQ"); err == nil {
		if p := at.SplitParams(strings.TrimPrefix(v, "+CSQ:")); len(p) >= 1 {
			if rssi, err := strconv.Atoi(p[0]); err == nil {
				st.RSSI = rssi
				st.SignalDBm, st.SignalBars = signal(rssi)
			}
		}
	}
	if v, err := first("+CSCA?"); err == nil {
		if p := at.SplitParams(strings.TrimPrefix(v, "+CSCA:")); len(p) >= 1 {
			st.SMSC = p[0]
			if len(p) >= 2 && p[1] == "145" && !strings.HasPrefix(st.SMSC, "+") && st.SMSC != "" {
				st.SMSC = "+" + st.SMSC
			}
		}
	}
	return nil
}

// signal maps a +CSQ <rssi> to dBm (27.007: 0 = -113 dBm or less, 31 =
// -51 dBm or more, 2 dB steps) and 0-4 bars.
func signal(rssi int) (dbm, bars int) {
	if rssi < 0 || rssi > 31 {
		return 0, 0
	}
	dbm = -113 + 2*rssi
	switch {
	case rssi >= 20:
		bars = 4
	case rssi >= 15:
		bars = 3
	case rssi >= 10:
		bars = 2
	case rssi >= 2:
		bars = 1
	}
	return dbm, bars
}

func maskIMEI(s string) string {
	if len(s) <= 4 {
		return s
	}
	return strings.Repeat("*", len(s)-4) + s[len(s)-4:]
}

// ErrUSSDTimeout reports that the network did not answer a USSD request in
// time (the session was cancelled with AT+CUSD=2).
var ErrUSSDTimeout = errors.New("the network did not answer the USSD request in time")

// DefaultUSSDTimeout bounds the wait for the +CUSD answer.
const DefaultUSSDTimeout = 30 * time.Second

var ussdRE = regexp.MustCompile(`^[0-9*#+]{1,40}$`)

type ussdReply struct {
	text string
	err  error
}

// ussdMu serialises USSD sessions across lines of the process (a modem has
// one session at a time; this keeps it simple).
var ussdMu sync.Mutex

// ussd implements Line.USSD.
func (x *extras) ussd(ctx context.Context, code string) (string, error) {
	if !ussdRE.MatchString(code) {
		return "", errors.New("send USSD: a code is digits, * and # (e.g. *100#)")
	}
	m, err := x.current()
	if err != nil {
		return "", err
	}
	ussdMu.Lock()
	defer ussdMu.Unlock()
	ch := make(chan ussdReply, 1)
	x.mu.Lock()
	x.ussdReply = ch
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		x.ussdReply = nil
		x.mu.Unlock()
	}()
	if _, err := m.Command(ctx, `+CUSD=1,"`+code+`",15`, 0); err != nil {
		return "", fmt.Errorf("send USSD %s: %w", code, err)
	}
	wait := x.cfg.USSDTimeout
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return "", fmt.Errorf("send USSD %s: %w", code, r.err)
		}
		return r.text, nil
	case <-t.C:
	case <-ctx.Done():
	}
	if _, err := m.Command(context.Background(), "+CUSD=2", 0); err != nil {
		x.log.Debug("failed to cancel USSD session", zap.Error(err))
	}
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	return "", fmt.Errorf("send USSD %s: %w (waited %s)", code, ErrUSSDTimeout, wait)
}

// handleCUSD passes a +CUSD URC to the USSD request waiting for it.
func (x *extras) handleCUSD(ctx context.Context, m *at.Session, line string) {
	r := parseCUSD(line)
	x.mu.Lock()
	ch := x.ussdReply
	x.mu.Unlock()
	if ch == nil {
		x.log.Info("ignored USSD message nobody asked for")
		return
	}
	if strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(line, "+CUSD:")), "1") {
		// The network wants an answer (a menu): close the session.
		if _, err := m.Command(ctx, "+CUSD=2", 0); err != nil {
			x.log.Debug("failed to close USSD menu", zap.Error(err))
		}
	}
	select {
	case ch <- r:
	default:
	}
}

// parseCUSD decodes "+CUSD: <m>[,<str>,<dcs>]".
func parseCUSD(line string) ussdReply {
	p := at.SplitParams(strings.TrimPrefix(line, "+CUSD:"))
	mode, _ := strconv.Atoi(p[0])
	switch mode {
	case 2:
		if len(p) < 2 || p[1] == "" {
			return ussdReply{err: errors.New("the network ended the USSD session")}
		}
	case 4:
		return ussdReply{err: errors.New("the network does not support this USSD code")}
	case 5:
		return ussdReply{err: errors.New("the network timed out the USSD session")}
	}
	if len(p) < 2 {
		return ussdReply{err: errors.New("the network answered without text")}
	}
	dcs := 15
	if len(p) >= 3 {
		if v, err := strconv.Atoi(p[2]); err == nil {
			dcs = v
		}
	}
	return ussdReply{text: decodeUSSD(p[1], dcs)}
}

// decodeUSSD decodes a USSD string per its CBS data coding scheme (3GPP TS
// 23.038 §5): UCS-2 schemes arrive as hex; GSM 7-bit ones as text (when
// the modem converts per +CSCS) or as hex of packed septets (Huawei and
// others), recognised when the string is long hex without spaces that
// decodes to printable text.
func decodeUSSD(s string, dcs int) string {
	ucs2 := dcs == 72 || dcs == 0x11 || (dcs&0xF0 == 0x40 || dcs&0xF0 == 0x50 || dcs&0xF0 == 0x60 || dcs&0xF0 == 0x70) && dcs&0x0C == 0x08
	b, err := hex.DecodeString(s)
	if err != nil || len(s) < 8 || !strings.ContainsAny(s, "ABCDEFabcdef") {
		return s // plain text (digits-only hex is more likely a number)
	}
	if ucs2 {
		if len(b)%2 != 0 {
			return s
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
		}
		return string(utf16.Decode(u))
	}
	sept := gsm7.Unpack7BitUSSD(b, 0)
	txt, err := gsm7.Decode(sept)
	if err != nil {
		return s
	}
	out := strings.TrimRight(string(txt), "\r\n\x00")
	for _, r := range out {
		if !unicode.IsPrint(r) && r != '\n' && r != '\r' {
			return s
		}
	}
	return out
}

// Call is one incoming voice call, hung up by the Line.
type Call struct {
	// ID is stable ("call:<line>:<seq>").
	ID string
	// Seq numbers the line's calls.
	Seq int64
	// LineID is Config.ID.
	LineID string
	// From is the caller's number from +CLIP ("+E164" for international
	// numbers), "" when withheld or unknown.
	From string
	// At is when the call rang.
	At time.Time
}

// CallHandler receives incoming calls once each, in order, with the same
// semantics as Handler: nil means handled (never passed again); an error
// keeps it and retries later with backoff.
type CallHandler func(ctx context.Context, c Call) error

// enableCallerID asks for caller ID on incoming calls (RING + +CLIP), so
// missed calls name the caller; modems without it still report RING. It
// runs on the run loop at reception set-up.
func (x *extras) enableCallerID(ctx context.Context, m *at.Session) {
	_, err := m.Command(ctx, "+CLIP=1", 0)
	x.call.clip = err == nil
}

// callSettle is how long RING/+CLIP codes are ignored after a hang-up (the
// modem may still report rings queued before it).
const callSettle = 5 * time.Second

// callState is the run loop's view of a ringing call. Owned by the run
// loop.
type callState struct {
	ringing  bool      // RING seen, no +CLIP yet
	hungUpAt time.Time // last hang-up
	clip     bool      // AT+CLIP=1 accepted
}

// handleRing handles RING (number "" and clip false) and +CLIP URCs: the
// first code of a call records it (with the number once +CLIP gives it)
// and hangs up.
func (x *extras) handleRing(ctx context.Context, m *at.Session, line string) {
	now := x.clock.Now()
	cs := &x.call
	if !cs.hungUpAt.IsZero() && now.Sub(cs.hungUpAt) < callSettle {
		return
	}
	from, isCLIP := "", strings.HasPrefix(line, "+CLIP:")
	if isCLIP {
		p := at.SplitParams(strings.TrimPrefix(line, "+CLIP:"))
		from = p[0]
		if len(p) >= 2 && p[1] == "145" && from != "" && !strings.HasPrefix(from, "+") {
			from = "+" + from
		}
	} else if cs.clip && !cs.ringing {
		cs.ringing = true // wait for the +CLIP that follows
		return
	}
	cs.ringing = false
	if _, err := x.store.saveCall(ctx, from, now); err != nil {
		x.log.Error("failed to store incoming call; not hanging up so it rings again", zap.Error(err))
		return
	}
	x.log.Info("received call; hanging up", zap.String("from", phone.Mask(from)))
	if _, err := m.Command(ctx, "H", 0); err != nil {
		if _, err2 := m.Command(ctx, "+CHUP", 0); err2 != nil {
			x.log.Warn("failed to hang up call", zap.Error(errors.Join(err, err2)))
		}
	}
	cs.hungUpAt = x.clock.Now()
	x.calls.wake()
}
