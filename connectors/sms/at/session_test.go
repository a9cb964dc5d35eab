package at

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	wat "github.com/warthog618/modem/at"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testLog(t testing.TB) *zap.Logger {
	if testing.Verbose() {
		return zaptest.NewLogger(t, zaptest.Level(zap.DebugLevel))
	}
	return zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
}

// eventually polls cond until it holds or the test times out.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startPeer(t testing.TB, script func(cmd string) string) *modemsim.Peer {
	t.Helper()
	p, err := modemsim.StartPeer(script)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

var okScript = modemsim.OKScript

// smsIndications are the indications the SMS line registers.
var smsIndications = map[string]int{
	"+CMTI:": 0, "+CMT:": 1, "+CDSI:": 0, "+CDS:": 1,
	"+CUSD:": 0, "RING": 0, "+CLIP:": 0,
}

// urcSink collects the indications the session queues, as the SMS
// line's run loop does.
type urcSink struct {
	m *Session

	mu   sync.Mutex
	urcs [][]string
}

func (s *urcSink) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for u := s.m.NextURC(); u != nil; u = s.m.NextURC() {
		s.urcs = append(s.urcs, u)
	}
}

func (s *urcSink) get() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]string(nil), s.urcs...)
}

func openPeerModem(t *testing.T, p *modemsim.Peer, timeout time.Duration) (*Session, *urcSink) {
	t.Helper()
	port, _, err := OpenPort(context.Background(), p.Path(), 115200)
	if err != nil {
		t.Fatal(err)
	}
	sink := &urcSink{}
	m := New(port, Options{Timeout: timeout, Indications: smsIndications, Log: testLog(t), Notify: func() { go sink.notify() }})
	sink.mu.Lock()
	sink.m = m
	sink.mu.Unlock()
	t.Cleanup(func() { _ = m.Close() })
	return m, sink
}

const cmtiURC = "\r\n+CMTI: \"SM\",5\r\n"
const cmtURC = "\r\n+CMT: ,24\r\n07915155010000F0040B915155214365F700002260101200000005C8329BFD06\r\n"
const cpmsInfo = "\r\n+CPMS: \"SM\",1,30,\"SM\",1,30,\"SM\",1,30\r\n\r\nOK\r\n"

// Upstream bug 3: a URC matching a registered indication is handed to the
// handler and also appended to the info of the command in flight.
func TestCommandDropsURCsFromInfo(t *testing.T) {
	cases := []struct {
		name     string
		answer   string
		upstream bool // call at.Command directly: shows the bug is there
		wantInfo []string
		wantURC  []string
	}{
		{
			name:     "CMTI during command",
			answer:   cmtiURC + cpmsInfo,
			wantInfo: []string{`+CPMS: "SM",1,30,"SM",1,30,"SM",1,30`},
			wantURC:  []string{`+CMTI: "SM",5`},
		},
		{
			name:     "CMT with PDU during command",
			answer:   cmtURC + cpmsInfo,
			wantInfo: []string{`+CPMS: "SM",1,30,"SM",1,30,"SM",1,30`},
			wantURC:  []string{"+CMT: ,24", "07915155010000F0040B915155214365F700002260101200000005C8329BFD06"},
		},
		{
			name:     "upstream at.Command leaks the URC",
			answer:   cmtiURC + cpmsInfo,
			upstream: true,
			wantInfo: []string{`+CMTI: "SM",5`, `+CPMS: "SM",1,30,"SM",1,30,"SM",1,30`},
			wantURC:  []string{`+CMTI: "SM",5`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startPeer(t, okScript(map[string]string{"AT+CPMS?": tc.answer}))
			m, sink := openPeerModem(t, p, time.Second)
			var info []string
			var err error
			if tc.upstream {
				info, err = m.at.Command("+CPMS?")
			} else {
				info, err = m.Command(testCtx(t), "+CPMS?", 0)
			}
			if err != nil {
				t.Fatalf("command: %v", err)
			}
			if !slices.Equal(info, tc.wantInfo) {
				t.Errorf("info = %q, want %q", info, tc.wantInfo)
			}
			eventually(t, "URC handler", func() bool { return len(sink.get()) == 1 })
			if got := sink.get()[0]; !slices.Equal(got, tc.wantURC) {
				t.Errorf("URC = %q, want %q", got, tc.wantURC)
			}
		})
	}
}

// Upstream bug 4: after a timeout the late reply is consumed by the next
// command. The guard drops it.
func TestLateReplyNotCreditedToNextCommand(t *testing.T) {
	cases := []struct {
		name     string
		slow     string // answer to AT+SLOW after 300 ms (timeout 200 ms); "" = never
		upstream bool
		wantNext []string
		wantCmds []string
	}{
		{
			name:     "late reply dropped",
			slow:     "\r\n+SLOW: stale\r\n\r\nOK\r\n",
			wantNext: []string{"+NEXT: fresh"},
			wantCmds: []string{"AT+SLOW", "AT+NEXT"},
		},
		{
			name:     "late error dropped",
			slow:     "\r\n+CME ERROR: 100\r\n",
			wantNext: []string{"+NEXT: fresh"},
			wantCmds: []string{"AT+SLOW", "AT+NEXT"},
		},
		{
			name:     "dropped command forgiven after probe",
			wantNext: []string{"+NEXT: fresh"},
			wantCmds: []string{"AT+SLOW", "AT", "AT+NEXT"},
		},
		{
			name:     "upstream at.Command credits it to the next command",
			slow:     "\r\n+SLOW: stale\r\n\r\nOK\r\n",
			upstream: true,
			wantNext: []string{"+SLOW: stale"},
			wantCmds: []string{"AT+SLOW", "AT+NEXT"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startPeer(t, func(cmd string) string {
				switch cmd {
				case "AT+SLOW":
					time.Sleep(300 * time.Millisecond)
					return tc.slow
				case "AT+NEXT":
					return "\r\n+NEXT: fresh\r\n\r\nOK\r\n"
				}
				return "\r\nOK\r\n"
			})
			m, _ := openPeerModem(t, p, 200*time.Millisecond)
			ctx := testCtx(t)
			var err error
			if tc.upstream {
				_, err = m.at.Command("+SLOW")
			} else {
				_, err = m.Command(ctx, "+SLOW", 0)
			}
			if !errors.Is(err, ErrTimeout) && !errors.Is(err, wat.ErrDeadlineExceeded) {
				t.Fatalf("slow command: err = %v, want a timeout", err)
			}
			var info []string
			if tc.upstream {
				info, err = m.at.Command("+NEXT")
			} else {
				info, err = m.Command(ctx, "+NEXT", 0)
			}
			if err != nil {
				t.Fatalf("next command: %v", err)
			}
			if !slices.Equal(info, tc.wantNext) {
				t.Errorf("next info = %q, want %q", info, tc.wantNext)
			}
			eventually(t, "commands "+strings.Join(tc.wantCmds, " "), func() bool {
				return slices.Equal(p.Commands(), tc.wantCmds)
			})
		})
	}
}

func TestUnresponsiveModem(t *testing.T) {
	p := startPeer(t, func(cmd string) string {
		if cmd == "AT+OK" {
			return "\r\nOK\r\n"
		}
		return "" // hung
	})
	m, _ := openPeerModem(t, p, 100*time.Millisecond)
	ctx := testCtx(t)
	if _, err := m.Command(ctx, "+CSQ", 0); !errors.Is(err, ErrTimeout) {
		t.Fatalf("first: err = %v, want ErrTimeout", err)
	}
	if _, err := m.Command(ctx, "+OK", 0); !errors.Is(err, ErrUnresponsive) {
		t.Fatalf("second: err = %v, want ErrUnresponsive", err)
	}
	if got := p.Commands(); slices.Contains(got, "AT+OK") {
		t.Errorf("a command was sent to an unresponsive modem: %q", got)
	}
}

// Garbage from the modem must never crash the engine or corrupt answers.
func TestGarbageFromModem(t *testing.T) {
	long := strings.Repeat("Z", 100000)
	p := startPeer(t, okScript(map[string]string{
		"AT+CGMI": "\r\n\x00\xff\xfe junk \x07\r\nBubbled\r\n\r\nOK\r\n",
		"AT+CGMM": "\r\nModemSim\r\n\r\nOK\r\n",
	}))
	m, sink := openPeerModem(t, p, time.Second)
	ctx := testCtx(t)
	p.Write("\r\nrandom noise\r\n" + long + "\r\n\x00\x00\r\n+CMTI: garbage\r\n")
	info, err := m.Command(ctx, "+CGMI", 0)
	if err != nil {
		t.Fatalf("CGMI: %v", err)
	}
	if !slices.Contains(info, "Bubbled") {
		t.Errorf("CGMI info = %q, want it to contain Bubbled", info)
	}
	p.Write(long + long)
	info, err = m.Command(ctx, "+CGMM", 0)
	if err != nil || !slices.Equal(info, []string{"ModemSim"}) {
		t.Fatalf("CGMM = %q, %v; want [ModemSim]", info, err)
	}
	select {
	case <-m.Closed():
		t.Fatal("garbage closed the AT engine")
	default:
	}
	eventually(t, "garbage URC", func() bool { return len(sink.get()) == 1 })
}

func TestConvertATError(t *testing.T) {
	cases := []struct {
		name      string
		in        error
		wantCMS   int
		wantCME   int
		temporary bool
		is        error
	}{
		{name: "CMS numeric temporary", in: wat.CMSError("38"), wantCMS: 38, wantCME: -1, temporary: true},
		{name: "CMS numeric permanent", in: wat.CMSError("21"), wantCMS: 21, wantCME: -1},
		{name: "CMS verbose", in: wat.CMSError("unknown error"), wantCMS: -1, wantCME: -1},
		{name: "CME numeric", in: wat.CMEError("16"), wantCMS: -1, wantCME: 16},
		{name: "closed", in: wat.ErrClosed, wantCMS: -1, wantCME: -1, is: ErrClosed},
		{name: "deadline", in: wat.ErrDeadlineExceeded, wantCMS: -1, wantCME: -1, is: ErrTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := convertError(tc.in)
			if got := CMSCode(err); got != tc.wantCMS {
				t.Errorf("CMS code = %d, want %d", got, tc.wantCMS)
			}
			if got := CMECode(err); got != tc.wantCME {
				t.Errorf("CME code = %d, want %d", got, tc.wantCME)
			}
			var cms *CMSError
			if errors.As(err, &cms) && cms.Temporary() != tc.temporary {
				t.Errorf("Temporary() = %v, want %v", cms.Temporary(), tc.temporary)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want %v", err, tc.is)
			}
		})
	}
}

func TestParsers(t *testing.T) {
	t.Run("lists", func(t *testing.T) {
		got := ParseLists(`("SM","ME","SR"),("SM","ME"),("ME")`)
		if len(got) != 3 || !slices.Equal(got[0], []string{"SM", "ME", "SR"}) || !slices.Equal(got[2], []string{"ME"}) {
			t.Errorf("parseLists = %q", got)
		}
	})
	redact := []struct{ in, want string }{
		{`AT+CPIN="1234"`, "AT+CPIN=<redacted>"},
		{`at+cpin="12345678","1234"`, "at+CPIN=<redacted>"},
		{"AT+CPIN?", "AT+CPIN?"},
	}
	for _, tc := range redact {
		t.Run("redact "+tc.in, func(t *testing.T) {
			if got := Redact(tc.in); got != tc.want {
				t.Errorf("redactLine(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// Upstream bug 8: at runs each indication handler in its own goroutine, so
// handlers see URCs in no particular order. The session queues them in
// wire order.
func TestURCsInWireOrder(t *testing.T) {
	p := startPeer(t, okScript(nil))
	m, sink := openPeerModem(t, p, time.Second)
	var burst strings.Builder
	var want [][]string
	for i := range 30 {
		line := "+CMTI: \"SM\"," + strconv.Itoa(i)
		burst.WriteString("\r\n" + line + "\r\n")
		want = append(want, []string{line})
	}
	p.Write(burst.String())
	eventually(t, "30 URCs", func() bool { return len(sink.get()) == 30 })
	if got := sink.get(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("URCs = %q, want %q", got, want)
	}
	if _, err := m.Command(testCtx(t), "", 0); err != nil {
		t.Errorf("command after the burst: %v", err)
	}
}

// Indications registered by the caller (not only the SMS ones) are
// separated from command replies, with as many trailing lines as asked.
func TestIndicationTrailingLines(t *testing.T) {
	p := startPeer(t, okScript(map[string]string{
		"AT+CGMM": "\r\n+XTEST: head\r\nfirst\r\nsecond\r\n\r\nModemSim\r\n\r\nOK\r\n",
	}))
	port, _, err := OpenPort(context.Background(), p.Path(), 115200)
	if err != nil {
		t.Fatal(err)
	}
	sink := &urcSink{}
	m := New(port, Options{Timeout: time.Second, Indications: map[string]int{"+XTEST:": 2}, Log: testLog(t), Notify: func() { go sink.notify() }})
	sink.mu.Lock()
	sink.m = m
	sink.mu.Unlock()
	t.Cleanup(func() { _ = m.Close() })
	info, err := m.Command(testCtx(t), "+CGMM", 0)
	if err != nil || !slices.Equal(info, []string{"ModemSim"}) {
		t.Fatalf("CGMM = %q, %v; want [ModemSim]", info, err)
	}
	eventually(t, "URC", func() bool { return len(sink.get()) == 1 })
	if got, want := sink.get()[0], []string{"+XTEST: head", "first", "second"}; !slices.Equal(got, want) {
		t.Errorf("URC = %q, want %q", got, want)
	}
}

// TestProbeThatReadALateReplyOwesNothingTwice: the resynchronisation probe
// reads the late reply of an abandoned command in place of its own, and its
// own OK arrives in the same breath, before the session can note that it is
// still owed. That OK must be dropped as answering nothing, and the next
// command must get its own answer (it used to get the stale OK, or lose its
// answer to the owed-OK accounting: an AT+CMGS then "succeeded" without its
// prompt, and its PDU was never written).
func TestProbeThatReadALateReplyOwesNothingTwice(t *testing.T) {
	p := startPeer(t, func(cmd string) string {
		switch cmd {
		case "AT+SLOW":
			return "" // answered late, together with the probe's own OK
		case "AT":
			return "\r\n+SLOW: late\r\n\r\nOK\r\n\r\nOK\r\n"
		case "AT+NEXT":
			return "\r\n+NEXT: fresh\r\n\r\nOK\r\n"
		}
		return "\r\nOK\r\n"
	})
	m, _ := openPeerModem(t, p, 200*time.Millisecond)
	ctx := testCtx(t)
	if _, err := m.Command(ctx, "+SLOW", 0); !errors.Is(err, ErrTimeout) {
		t.Fatalf("slow command: err = %v, want a timeout", err)
	}
	info, err := m.Command(ctx, "+NEXT", 0)
	if err != nil || !slices.Equal(info, []string{"+NEXT: fresh"}) {
		t.Fatalf("next command: info %q, err %v; want its own answer", info, err)
	}
	info, err = m.Command(ctx, "+NEXT", 0)
	if err != nil || !slices.Equal(info, []string{"+NEXT: fresh"}) {
		t.Fatalf("the command after: info %q, err %v; want its own answer", info, err)
	}
	if n, _ := m.guard.owed(); n != 0 {
		t.Errorf("the guard still owes %d finals", n)
	}
}
