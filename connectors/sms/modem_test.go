package sms

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warthog618/modem/at"
)

// urcSink collects the indications the modem wrapper queues, as the
// Line's run loop does.
type urcSink struct {
	m *modem

	mu   sync.Mutex
	urcs [][]string
}

func (s *urcSink) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for u := s.m.nextURC(); u != nil; u = s.m.nextURC() {
		s.urcs = append(s.urcs, u)
	}
}

func (s *urcSink) get() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]string(nil), s.urcs...)
}

func openPeerModem(t *testing.T, p *peer, timeout time.Duration) (*modem, *urcSink) {
	t.Helper()
	port, _, err := openPort(context.Background(), p.path(), DefaultBaud)
	if err != nil {
		t.Fatal(err)
	}
	sink := &urcSink{}
	m := newModem(port, timeout, testLog(t), func() { go sink.notify() })
	sink.mu.Lock()
	sink.m = m
	sink.mu.Unlock()
	t.Cleanup(func() { _ = m.close() })
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
				info, err = m.command(testCtx(t), "+CPMS?", 0)
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
				_, err = m.command(ctx, "+SLOW", 0)
			}
			if !errors.Is(err, ErrTimeout) && !errors.Is(err, at.ErrDeadlineExceeded) {
				t.Fatalf("slow command: err = %v, want a timeout", err)
			}
			var info []string
			if tc.upstream {
				info, err = m.at.Command("+NEXT")
			} else {
				info, err = m.command(ctx, "+NEXT", 0)
			}
			if err != nil {
				t.Fatalf("next command: %v", err)
			}
			if !slices.Equal(info, tc.wantNext) {
				t.Errorf("next info = %q, want %q", info, tc.wantNext)
			}
			eventually(t, "commands "+strings.Join(tc.wantCmds, " "), func() bool {
				return slices.Equal(p.commands(), tc.wantCmds)
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
	if _, err := m.command(ctx, "+CSQ", 0); !errors.Is(err, ErrTimeout) {
		t.Fatalf("first: err = %v, want ErrTimeout", err)
	}
	if _, err := m.command(ctx, "+OK", 0); !errors.Is(err, ErrUnresponsive) {
		t.Fatalf("second: err = %v, want ErrUnresponsive", err)
	}
	if got := p.commands(); slices.Contains(got, "AT+OK") {
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
	p.write("\r\nrandom noise\r\n" + long + "\r\n\x00\x00\r\n+CMTI: garbage\r\n")
	info, err := m.command(ctx, "+CGMI", 0)
	if err != nil {
		t.Fatalf("CGMI: %v", err)
	}
	if !slices.Contains(info, "Bubbled") {
		t.Errorf("CGMI info = %q, want it to contain Bubbled", info)
	}
	p.write(long + long)
	info, err = m.command(ctx, "+CGMM", 0)
	if err != nil || !slices.Equal(info, []string{"ModemSim"}) {
		t.Fatalf("CGMM = %q, %v; want [ModemSim]", info, err)
	}
	select {
	case <-m.closed():
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
		{name: "CMS numeric temporary", in: at.CMSError("38"), wantCMS: 38, wantCME: -1, temporary: true},
		{name: "CMS numeric permanent", in: at.CMSError("21"), wantCMS: 21, wantCME: -1},
		{name: "CMS verbose", in: at.CMSError("unknown error"), wantCMS: -1, wantCME: -1},
		{name: "CME numeric", in: at.CMEError("16"), wantCMS: -1, wantCME: 16},
		{name: "closed", in: at.ErrClosed, wantCMS: -1, wantCME: -1, is: ErrClosed},
		{name: "deadline", in: at.ErrDeadlineExceeded, wantCMS: -1, wantCME: -1, is: ErrTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := convertATError(tc.in)
			if got := cmsCode(err); got != tc.wantCMS {
				t.Errorf("CMS code = %d, want %d", got, tc.wantCMS)
			}
			if got := cmeCode(err); got != tc.wantCME {
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
	t.Run("CMGL", func(t *testing.T) {
		info := []string{
			`+CMGL: 1,0,,24`, "0791AABB",
			"garbage",
			`+CMGL: 2,3,"name",30`, "0011FF",
			`+CMGL: 3,1,,5`, // PDU line missing
			`+CMGL: 4,1,,5`, "07AB",
		}
		got := parseCMGL(info)
		want := []cmglEntry{{1, 0, "0791AABB"}, {2, 3, "0011FF"}, {4, 1, "07AB"}}
		if !slices.Equal(got, want) {
			t.Errorf("parseCMGL = %v, want %v", got, want)
		}
	})
	t.Run("lists", func(t *testing.T) {
		got := parseLists(`("SM","ME","SR"),("SM","ME"),("ME")`)
		if len(got) != 3 || !slices.Equal(got[0], []string{"SM", "ME", "SR"}) || !slices.Equal(got[2], []string{"ME"}) {
			t.Errorf("parseLists = %q", got)
		}
	})
	storage := []struct {
		name  string
		lists [][]string
		want  string
	}{
		{"none", nil, "SM"},
		{"SM preferred", [][]string{{"ME", "SM"}, {"ME", "SM"}, {"ME", "SM"}}, "SM"},
		{"ME when SM cannot receive", [][]string{{"SM", "ME"}, {"SM", "ME"}, {"ME"}}, "ME"},
		{"odd names", [][]string{{"XX", "YY"}, {"YY"}, {"YY"}}, "YY"},
	}
	for _, tc := range storage {
		t.Run("storage "+tc.name, func(t *testing.T) {
			if got := pickStorage(tc.lists); got != tc.want {
				t.Errorf("pickStorage = %q, want %q", got, tc.want)
			}
		})
	}
	redact := []struct{ in, want string }{
		{`AT+CPIN="1234"`, "AT+CPIN=<redacted>"},
		{`at+cpin="12345678","1234"`, "at+CPIN=<redacted>"},
		{"AT+CPIN?", "AT+CPIN?"},
	}
	for _, tc := range redact {
		t.Run("redact "+tc.in, func(t *testing.T) {
			if got := redactLine(tc.in); got != tc.want {
				t.Errorf("redactLine(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	masks := []struct{ in, want string }{
		{"+15551234567", "+*********67"},
		{"Bank", "Bank"},
		{"123", "123"},
	}
	for _, tc := range masks {
		t.Run("mask "+tc.in, func(t *testing.T) {
			if got := maskNumber(tc.in); got != tc.want {
				t.Errorf("maskNumber(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
