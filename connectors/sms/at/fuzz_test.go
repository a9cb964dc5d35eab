package at

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// The seed corpora of these targets are in testdata/fuzz/<target>; plain
// `go test` runs them as unit tests. Fuzz with e.g.
// `go test -tags goolm -run '^$' -fuzz '^FuzzSession$' -fuzztime 60s ./connectors/sms/at/`.

// FuzzSplitParams: any parameter list splits without panicking into one
// value per comma outside quotes, with the quotes removed.
func FuzzSplitParams(f *testing.F) {
	for _, s := range []string{`"SM",3`, ` 0,"+15551234567",145,"21/12/06,10:00:00+04"`, `"a,b",c`, `"unterminated,x`, ``} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := SplitParams(s)
		commas, quoted := 0, false
		for _, c := range strings.TrimSpace(s) {
			switch {
			case c == '"':
				quoted = !quoted
			case c == ',' && !quoted:
				commas++
			}
		}
		if len(got) != commas+1 {
			t.Fatalf("SplitParams(%q) = %d values, want %d", s, len(got), commas+1)
		}
		for _, v := range got {
			if strings.ContainsRune(v, '"') {
				t.Fatalf("SplitParams(%q) kept a quote in %q", s, v)
			}
		}
	})
}

// FuzzParseLists: any test-command answer parses without panicking into
// at most one list per '(' and no empty values.
func FuzzParseLists(f *testing.F) {
	for _, s := range []string{`("SM","ME","SR"),("SM","ME"),("ME")`, `(0-3),(0,1)`, `((`, `)(`, `("a",)`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := ParseLists(s)
		if len(got) > strings.Count(s, "(") {
			t.Fatalf("ParseLists(%q) = %d lists from %d '('", s, len(got), strings.Count(s, "("))
		}
		for _, l := range got {
			for _, v := range l {
				if v == "" {
					t.Fatalf("ParseLists(%q) has an empty value: %q", s, got)
				}
			}
		}
	})
}

// FuzzLogLine: any modem line is loggable; a PDU never shows its hex, and
// a PIN never shows.
func FuzzLogLine(f *testing.F) {
	for _, s := range []string{"07915155000000F0040B915155674523F10000624011915521000AE8329BFD4697D9EC37", `AT+CPIN="1234"`, "OK", "+CMTI: \"SM\",3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := LogLine(s)
		if isHexPDU(s) && strings.Contains(got, s) {
			t.Fatalf("LogLine(%q) shows the PDU: %q", s, got)
		}
		if i := strings.Index(strings.ToUpper(s), "+CPIN="); i >= 0 && strings.Contains(got, s[i+6:]) && s[i+6:] != "" && !strings.Contains("<redacted>", s[i+6:]) {
			t.Fatalf("LogLine(%q) shows the PIN: %q", s, got)
		}
	})
}

// fuzzPort is a modem that says reply to the first command it is given,
// in chunks of chunk bytes, and then hangs up (eof) or falls silent until
// Close.
type fuzzPort struct {
	reply   []byte
	chunk   int
	eof     bool
	written chan struct{} // closed at the first write
	closed  chan struct{} // closed by Close

	wonce, conce sync.Once
	mu           sync.Mutex // guards reply
}

func newFuzzPort(reply []byte, chunk int, eof bool) *fuzzPort {
	return &fuzzPort{reply: reply, chunk: chunk, eof: eof, written: make(chan struct{}), closed: make(chan struct{})}
}

func (p *fuzzPort) Read(b []byte) (int, error) {
	select {
	case <-p.written:
	case <-p.closed:
		return 0, os.ErrClosed
	}
	p.mu.Lock()
	if len(p.reply) > 0 {
		n := copy(b[:min(len(b), p.chunk)], p.reply)
		p.reply = p.reply[n:]
		p.mu.Unlock()
		return n, nil
	}
	p.mu.Unlock()
	if p.eof {
		return 0, io.EOF
	}
	<-p.closed
	return 0, os.ErrClosed
}

func (p *fuzzPort) Write(b []byte) (int, error) {
	select {
	case <-p.closed:
		return 0, os.ErrClosed
	default:
	}
	p.wonce.Do(func() { close(p.written) })
	return len(b), nil
}

func (p *fuzzPort) Close() error {
	p.conce.Do(func() { close(p.closed) })
	return nil
}

// clearError reports whether err is one the SMS line can classify.
func clearError(err error) bool {
	var cms *CMSError
	var cme *CMEError
	return errors.Is(err, ErrTimeout) || errors.Is(err, ErrClosed) || errors.Is(err, ErrUnresponsive) ||
		errors.Is(err, ErrSendUnknown) || errors.As(err, &cms) || errors.As(err, &cme) || IsPlainError(err)
}

// FuzzSession: whatever bytes the modem answers a command with (split
// anywhere, followed by a hang-up or by silence), the session does not
// panic or hang: the command returns within its timeout (plus slack for a
// loaded machine) with its info lines or an error the line can classify,
// and Close stops the session. The first byte picks the shape: bit 0
// hang-up, bit 1 a two-step +CMGS, the rest the read chunk size.
func FuzzSession(f *testing.F) {
	f.Add([]byte("\x01\r\n+CMGL: 1,0,,23\r\n07915155000000F0040B9151\r\n\r\nOK\r\n"))
	f.Add([]byte("\x03\r\n> \r\n+CMGS: 17\r\n\r\nOK\r\n"))
	f.Add([]byte("\x00\r\n+CMS ERROR: 42\r\n"))
	f.Add([]byte("\x01+CMTI: \"SM\",3\r\nERROR\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || len(data) > 4096 {
			return
		}
		mode, reply := data[0], data[1:]
		port := newFuzzPort(reply, int(mode>>2)+1, mode&1 == 1)
		s := New(port, Options{Timeout: 10 * time.Millisecond, Indications: map[string]int{"+CMTI:": 0, "+CMT:": 1, "+CDS:": 1, "+CUSD:": 0},
			Log: zap.NewNop(), Notify: func() {}})
		defer func() { _ = s.Close() }()
		type result struct {
			info []string
			err  error
		}
		done := make(chan result, 1)
		go func() {
			var r result
			if mode&2 != 0 {
				r.info, r.err = s.SMSCommand(context.Background(), "+CMGS=23", "0011000B915155674523F10000AA0AE8329BFD4697D9EC37", 0, 0)
			} else {
				r.info, r.err = s.Command(context.Background(), "+CMGL=4", 0)
			}
			done <- r
		}()
		var r result
		select {
		case r = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the command hung on modem output %q", reply)
		}
		if r.err != nil && (!clearError(r.err) || !strings.HasPrefix(r.err.Error(), "AT+CMG")) {
			t.Fatalf("modem output %q gave an unclassified error %T %q", reply, errors.Unwrap(r.err), r.err)
		}
		for _, l := range r.info {
			if l == "" || l != strings.TrimSpace(l) || strings.Contains(l, "\n") {
				t.Fatalf("info line %q is empty, untrimmed or more than one line", l)
			}
		}
		for u := s.NextURC(); u != nil; u = s.NextURC() {
		}
		_ = s.Close()
		select {
		case <-s.Closed():
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not stop the session")
		}
	})
}

// TestStrayWhitespaceAroundLines: some modems pad lines with spaces or
// stray CRs; the guard and at must agree on what is a final result code,
// so " OK" ends the command (found by FuzzSession: at took "\r0" as an
// info line the guard had read as "0").
func TestStrayWhitespaceAroundLines(t *testing.T) {
	for _, tc := range []struct {
		name, reply string
		info        []string
	}{
		{"spaces around OK", "\r\n  OK \r\n", nil},
		{"CR before info and OK", "\r\r\n+CPMS: 1,10\r\n\r\rOK\r\n", []string{"+CPMS: 1,10"}},
		{"prompt glued to a line", "> \r+CPMS: 2,10\r\nOK\r\n", []string{"+CPMS: 2,10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := newFuzzPort([]byte(tc.reply), 64, false)
			s := New(port, Options{Timeout: 5 * time.Second, Log: zap.NewNop()})
			defer func() { _ = s.Close() }()
			info, err := s.Command(context.Background(), "+CPMS?", 0)
			if err != nil || strings.Join(info, "|") != strings.Join(tc.info, "|") {
				t.Fatalf("Command = %q, %v; want %q, nil", info, err, tc.info)
			}
		})
	}
}
