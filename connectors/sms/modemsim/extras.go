package modemsim

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf16"

	"go.uber.org/zap"
)

// DefaultRingInterval is how often an incoming call repeats RING.
const DefaultRingInterval = 2 * time.Second

// DefaultCallTimeout is how long an unanswered call rings before the
// caller gives up.
const DefaultCallTimeout = 30 * time.Second

// SendRecord is one AT+CMGS exchange as the simulator saw it, for duplicate
// counting and modem-busy measurements.
type SendRecord struct {
	// Prompted is when the AT+CMGS=<len> line was executed.
	Prompted time.Time `json:"prompted"`
	// Submitted is when the PDU (^Z) arrived.
	Submitted time.Time `json:"submitted"`
	// Answered is when the final result was written (after any delay).
	Answered time.Time `json:"answered"`
	// PDU is the submitted PDU, upper-case hex.
	PDU string `json:"pdu"`
	// MR is the TP-MR answered, -1 when the submit failed or was cancelled.
	MR int `json:"mr"`
}

// USSDFunc answers a USSD code sent with AT+CUSD=1: the text, its CBS data
// coding scheme (15 = GSM 7-bit sent as text, 72 = UCS-2 sent as hex), and
// ok=false to send no answer at all (the host times out).
type USSDFunc func(code string) (text string, dcs int, ok bool)

// extras holds the simulator state added for the line's self-healing,
// outbox and modem-care tests. Guarded by Sim.mu.
type extras struct {
	s *Sim

	hangUntilZ bool // hung until ATZ/AT&F (HangUntilReset)
	wedged     bool // radio wedged until +CFUN off/on (WedgeRadio)
	radioOff   bool // +CFUN went to 0/4 since the wedge
	dropNext   int  // command lines to ignore (DropNext)
	clip       bool // AT+CLIP=1

	rssi     *int
	reg      *int
	operator string
	ussd     USSDFunc

	log []SendRecord

	ringing  bool
	ringStop chan struct{}
	hangups  []string // "ATH" / "AT+CHUP" that ended a call
}

func (x *extras) rssiLocked() int {
	if x.rssi != nil {
		return *x.rssi
	}
	return 20
}

func (x *extras) regLocked() int {
	if x.reg != nil {
		return *x.reg
	}
	return 1
}

func (x *extras) operatorLocked() string {
	if x.operator != "" {
		return x.operator
	}
	return Operator
}

func (x *extras) promptLocked() {
	x.log = append(x.log, SendRecord{Prompted: time.Now(), MR: -1})
	if len(x.log) > 200000 {
		x.log = append([]SendRecord(nil), x.log[len(x.log)-100000:]...)
	}
}

func (x *extras) noteCMGSLocked(pdu string) {
	if n := len(x.log); n > 0 && x.log[n-1].Submitted.IsZero() {
		x.log[n-1].Submitted = time.Now()
		x.log[n-1].PDU = pdu
	}
}

func (x *extras) acceptedLocked(mr int) {
	if n := len(x.log); n > 0 {
		x.log[n-1].MR = mr
	}
}

func (x *extras) answeredLocked(submitted bool) {
	if n := len(x.log); n > 0 && x.log[n-1].Answered.IsZero() {
		x.log[n-1].Answered = time.Now()
	}
}

// SendLog returns every AT+CMGS exchange in order (the most recent 100000
// or more), including failed and cancelled ones (MR -1).
func (s *Sim) SendLog() []SendRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SendRecord(nil), s.x.log...)
}

// FailCMGS makes the next times AT+CMGS with a valid PDU answer
// "+CMS ERROR: <code>" (like FailNextCMGS called times times).
func (s *Sim) FailCMGS(code, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < times; i++ {
		s.failNext = append(s.failNext, code)
	}
}

// HangUntilReset makes the modem stop answering until it receives ATZ or
// AT&F, as some firmware does until the host reopens the port and resets
// it. Replug also ends it.
func (s *Sim) HangUntilReset() {
	s.mu.Lock()
	s.hung, s.x.hangUntilZ = true, true
	s.mu.Unlock()
}

// DropNext makes the modem ignore the next n command lines (no echo, no
// answer), like a modem that lost them.
func (s *Sim) DropNext(n int) {
	s.mu.Lock()
	s.x.dropNext = n
	s.mu.Unlock()
}

// WedgeRadio models a radio stuck off the network while the modem still
// answers: +CREG? says not registered and AT+CMGS answers +CMS ERROR: 331
// until the radio is switched off (AT+CFUN=0 or 4) and on again, or the
// modem is power cycled.
func (s *Sim) WedgeRadio() {
	s.mu.Lock()
	s.x.wedged, s.x.radioOff = true, false
	s.mu.Unlock()
}

// DropRouting sets <mt> and <ds> of +CNMI to 0, as the modem does after a
// missed +CNMA: new messages are stored silently, status reports dropped.
func (s *Sim) DropRouting() {
	s.mu.Lock()
	s.set.cnmi[1], s.set.cnmi[3] = 0, 0
	s.mu.Unlock()
}

// SetSignal sets the <rssi> answered by +CSQ (0-31, 99 unknown; default 20).
func (s *Sim) SetSignal(rssi int) {
	s.mu.Lock()
	s.x.rssi = &rssi
	s.mu.Unlock()
}

// SetRegistration sets the <stat> answered by +CREG?/+CGREG?/+CEREG? while
// the SIM is ready and the radio on (default 1, home; 5 roaming, 2
// searching, 3 denied, 0 none).
func (s *Sim) SetRegistration(stat int) {
	s.mu.Lock()
	s.x.reg = &stat
	s.mu.Unlock()
}

// SetOperator sets the network name answered by +COPS? (default Operator).
func (s *Sim) SetOperator(name string) {
	s.mu.Lock()
	s.x.operator = name
	s.mu.Unlock()
}

// SetUSSD sets how the network answers USSD codes; nil (the default)
// answers +CME ERROR: 4 to AT+CUSD=1.
func (s *Sim) SetUSSD(f USSDFunc) {
	s.mu.Lock()
	s.x.ussd = f
	s.mu.Unlock()
}

func (s *Sim) cmdCUSD(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindTest:
		return []string{"+CUSD: (0-2)"}, "", nil
	case kindRead:
		return []string{"+CUSD: 1"}, "", nil
	case kindSet:
		n, ok := intArg(c.args, 0)
		if !ok || n > 2 {
			return nil, s.cmeLocked(50), nil
		}
		if n == 2 || len(c.args) < 2 {
			return nil, "", nil
		}
		code, ok := strArg(c.args, 1)
		if !ok {
			return nil, s.cmeLocked(50), nil
		}
		if s.x.ussd == nil {
			return nil, s.cmeLocked(4), nil
		}
		text, dcs, ok := s.x.ussd(code)
		if !ok {
			return nil, "", nil
		}
		str := text
		if dcs == 72 {
			u := utf16.Encode([]rune(text))
			b := make([]byte, 2*len(u))
			for i, v := range u {
				b[2*i], b[2*i+1] = byte(v>>8), byte(v)
			}
			str = strings.ToUpper(hex.EncodeToString(b))
		}
		s.urcs = append(s.urcs, urc{kind: urcIndication, text: fmt.Sprintf("\r\n+CUSD: 0,\"%s\",%d\r\n", str, dcs)})
		return nil, "", nil
	}
	return nil, resultError, nil
}

func (s *Sim) cmdCLIP(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindRead:
		v := 0
		if s.x.clip {
			v = 1
		}
		return []string{fmt.Sprintf("+CLIP: %d,1", v)}, "", nil
	case kindTest:
		return []string{"+CLIP: (0,1)"}, "", nil
	case kindSet:
		v, ok := intArg(c.args, 0)
		if !ok || v > 1 {
			return nil, s.cmeLocked(50), nil
		}
		s.x.clip = v == 1
		return nil, "", nil
	}
	return nil, resultError, nil
}

func (s *Sim) cmdCHUP(c call) ([]string, string, *prompt) {
	if c.kind == kindTest {
		return nil, "", nil
	}
	if c.kind != kindExec {
		return nil, resultError, nil
	}
	s.x.hangUpLocked("AT+CHUP")
	return nil, "", nil
}

func (x *extras) hangUpLocked(how string) {
	if !x.ringing {
		return
	}
	x.hangups = append(x.hangups, how)
	x.stopRingingLocked()
}

func (x *extras) stopRingingLocked() {
	if x.ringStop != nil {
		close(x.ringStop)
		x.ringStop = nil
	}
	x.ringing = false
}

// Call makes a phone call the modem: RING (and +CLIP: "<from>",<type> when
// the host enabled AT+CLIP=1) every DefaultRingInterval until the host
// hangs up (ATH or AT+CHUP) or DefaultCallTimeout passes. It fails while
// another call rings or the modem cannot be reached.
func (s *Sim) Call(from string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reachableLocked(); err != nil {
		return fmt.Errorf("call: %w", err)
	}
	if s.x.ringing {
		return fmt.Errorf("call: another call is ringing")
	}
	stop := make(chan struct{})
	s.x.ringing, s.x.ringStop = true, stop
	s.ringLocked(from)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(DefaultRingInterval)
		defer t.Stop()
		end := time.NewTimer(DefaultCallTimeout)
		defer end.Stop()
		for {
			select {
			case <-stop:
				return
			case <-s.stop:
				return
			case <-end.C:
				s.mu.Lock()
				if s.x.ringStop == stop {
					s.x.stopRingingLocked()
				}
				s.mu.Unlock()
				return
			case <-t.C:
				s.mu.Lock()
				if s.x.ringStop == stop {
					s.ringLocked(from)
				}
				s.mu.Unlock()
			}
		}
	}()
	return nil
}

func (s *Sim) ringLocked(from string) {
	text := "\r\nRING\r\n"
	if s.x.clip {
		toa := 129
		if strings.HasPrefix(from, "+") {
			toa = 145
		}
		text += fmt.Sprintf("\r\n+CLIP: \"%s\",%d,,,,0\r\n", from, toa)
	}
	s.urcs = append(s.urcs, urc{kind: urcIndication, text: text})
	s.log.Debug("rang", zap.String("from", from))
	s.kickEngine()
}

// HangUps returns how the host ended calls so far ("ATH", "AT+CHUP"), one
// entry per call it hung up.
func (s *Sim) HangUps() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.x.hangups...)
}

// Ringing reports whether a call is ringing.
func (s *Sim) Ringing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.x.ringing
}

func isReset(line string) bool {
	u := strings.ToUpper(strings.TrimSpace(line))
	return u == "ATZ" || u == "ATZ0" || u == "AT&F" || u == "AT&F0"
}
