package sms

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bubbled/bubbled/connectors/sms/at"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
	"github.com/bubbled/bubbled/connectors/sms/pdu"
)

const (
	alice = "+15551234567"
	bob   = "+447700900123"
)

// longUCS2 needs three UCS-2 parts (67 characters each) and has emoji
// (surrogate pairs) on the part boundaries.
var longUCS2 = strings.Repeat("Привет 😀 ", 17)

// longGSM needs three GSM 7-bit parts (153 characters each).
var longGSM = strings.Repeat("The quick brown fox jumps over the lazy dog. ", 9)

func countPrefix(cmds []string, prefix string) int {
	n := 0
	for _, c := range cmds {
		if strings.HasPrefix(strings.ToUpper(c), prefix) {
			n++
		}
	}
	return n
}

func TestReceive(t *testing.T) {
	cases := []struct {
		name      string
		opts      modemsim.Options
		from      string
		text      string
		wantParts int
		wantCNMI  string // prefix of the accepted setting
		wantCmd   string // a command that must have been sent
	}{
		{name: "CMTI single", from: alice, text: "hello from the network", wantParts: 1, wantCNMI: "2,1", wantCmd: "AT+CMGD="},
		{name: "CMTI 3-part UCS-2 with emoji", from: alice, text: longUCS2, wantParts: 3, wantCNMI: "2,1", wantCmd: "AT+CMGD="},
		{name: "CMTI 3-part GSM", from: "Bank", text: longGSM, wantParts: 3, wantCNMI: "2,1", wantCmd: "AT+CMGD="},
		{
			name: "CMT direct with CNMA", from: bob, text: "direct " + longUCS2, wantParts: 3,
			opts:     modemsim.Options{CNMIModes: "(0-3),(0,2),(0),(0-2),(0,1)", DefaultCNMI: "0,0,0,0,0"},
			wantCNMI: "2,2", wantCmd: "AT+CNMA",
		},
		{
			name: "CMT without CSMS", from: bob, text: "no acks",
			opts:      modemsim.Options{NoCSMS: true, CNMIModes: "(0-3),(0,2),(0),(0-2),(0,1)", DefaultCNMI: "0,0,0,0,0"},
			wantParts: 1, wantCNMI: "2,2",
		},
		{
			name: "mode 1 only, echo on, zero-based storage", from: alice, text: "old modem",
			opts:      modemsim.Options{CNMIModes: "(0,1),(0,1),(0),(0,1),(0)", DefaultCNMI: "0,0,0,0,0", Echo: true, ZeroBasedIndex: true},
			wantParts: 1, wantCNMI: "1,1", wantCmd: "AT+CMGD=",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSimLine(t, tc.opts, Config{})
			ctx := testCtx(t)
			if err := s.line.StartReceiving(ctx); err != nil {
				t.Fatalf("StartReceiving: %v", err)
			}
			if !strings.HasPrefix(s.sim.CNMI(), tc.wantCNMI) {
				t.Errorf("CNMI = %q, want prefix %q", s.sim.CNMI(), tc.wantCNMI)
			}
			if err := s.sim.Deliver(tc.from, tc.text); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			m := s.rec.wait(t, ctx)
			if m.Text != tc.text || m.From != tc.from || m.Parts != tc.wantParts || m.LineID != "line1" {
				t.Errorf("got %+v, want text %q from %q in %d parts", m, tc.text, tc.from, tc.wantParts)
			}
			if !strings.HasPrefix(m.ID, "sms:line1:") {
				t.Errorf("ID = %q", m.ID)
			}
			if time.Since(m.Time) > time.Hour || time.Until(m.Time) > time.Hour {
				t.Errorf("Time = %v, want about now", m.Time)
			}
			eventually(t, "SIM emptied", func() bool { return s.sim.Stored() == 0 })
			eventually(t, "nothing pending at the network", func() bool { return len(s.sim.Pending()) == 0 })
			if tc.wantCmd != "" && countPrefix(s.sim.Commands(), tc.wantCmd) == 0 {
				t.Errorf("no %s in %q", tc.wantCmd, s.sim.Commands())
			}
			s.rec.expectNone(t, 100*time.Millisecond)
		})
	}
}

// +CNMA must only be sent after the message is persisted: when the
// database fails, the line answers RP-ERROR (AT+CNMA=2) and the network
// keeps the message for a later retry.
func TestCMTAckOnlyAfterPersist(t *testing.T) {
	s := newSimLine(t, modemsim.Options{CNMIModes: "(0-3),(0,2),(0),(0-2),(0,1)", DefaultCNMI: "0,0,0,0,0"}, Config{})
	ctx := testCtx(t)
	if err := s.line.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(ctx, `ALTER TABLE bubbled_sms_inbox RENAME TO broken_inbox`); err != nil {
		t.Fatal(err)
	}
	if err := s.sim.Deliver(alice, "must not be lost"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "NACK", func() bool { return countPrefix(s.sim.Commands(), "AT+CNMA=2") == 1 })
	if n := countPrefix(s.sim.Commands(), "AT+CNMA"); n != 1 {
		t.Errorf("%d AT+CNMA* commands, want only the NACK", n)
	}
	if got := len(s.sim.Pending()); got != 1 {
		t.Fatalf("network holds %d PDUs, want 1", got)
	}
	if _, err := s.db.Exec(ctx, `ALTER TABLE broken_inbox RENAME TO bubbled_sms_inbox`); err != nil {
		t.Fatal(err)
	}
	if err := s.sim.RedeliverPending(); err != nil {
		t.Fatal(err)
	}
	if m := s.rec.wait(t, ctx); m.Text != "must not be lost" {
		t.Errorf("text = %q", m.Text)
	}
	eventually(t, "acked", func() bool { return len(s.sim.Pending()) == 0 })
}

// Messages stored while bubbled was down are drained at start; SUBMITs in
// storage are left alone.
func TestDrainAtStart(t *testing.T) {
	s := newSimLine(t, modemsim.Options{}, Config{})
	ctx := testCtx(t)
	for _, m := range []struct{ from, text string }{{alice, "first"}, {bob, longUCS2}, {alice, "third"}} {
		if err := s.sim.StoreOnly(m.from, m.text); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.line.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	// Senders are handed concurrently: order is kept per sender.
	got := map[string][]string{}
	for range 3 {
		m := s.rec.wait(t, ctx)
		got[m.From] = append(got[m.From], m.Text)
	}
	if want := []string{"first", "third"}; !slices.Equal(got[alice], want) {
		t.Errorf("alice's texts = %q, want %q", got[alice], want)
	}
	if want := []string{longUCS2}; !slices.Equal(got[bob], want) {
		t.Errorf("bob's texts = %q, want %q", got[bob], want)
	}
	if s.sim.Stored() != 0 {
		t.Errorf("%d messages left on the SIM", s.sim.Stored())
	}
}

// Reading the same SMS again after a restart (crash after commit, before
// AT+CMGD) must not deliver it twice; undelivered messages are redelivered
// by the next Line.
func TestRestart(t *testing.T) {
	sim := startSim(t, modemsim.Options{})
	dbPath := filepath.Join(t.TempDir(), "bubbled.db")
	db := openDB(t, dbPath)
	cfg := Config{ID: "line1", Device: sim.Path(), CommandTimeout: 2 * time.Second}
	ctx := testCtx(t)

	// Line 1 receives "once" and delivers it, and receives "later" but the
	// bridge keeps failing.
	l1, rec1 := openLine(t, db, cfg, 0)
	if err := sim.StoreOnly(alice, "once"); err != nil {
		t.Fatal(err)
	}
	stored := sim.Messages()
	if len(stored) != 1 {
		t.Fatalf("stored %d", len(stored))
	}
	if err := l1.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	first := rec1.wait(t, ctx)
	rec1.mu.Lock()
	rec1.fail = 1 << 30
	rec1.mu.Unlock()
	if err := sim.Deliver(bob, "later"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "handler called for later", func() bool {
		rec1.mu.Lock()
		defer rec1.mu.Unlock()
		return rec1.calls >= 2
	})
	eventually(t, "SIM emptied", func() bool { return sim.Stored() == 0 })
	if err := l1.Close(); err != nil {
		t.Fatal(err)
	}

	// The very same PDU shows up again in storage.
	if err := sim.DeliverPDU(stored[0].PDU); err != nil {
		t.Fatal(err)
	}
	l2, rec2 := openLine(t, db, cfg, 0)
	if err := l2.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	if m := rec2.wait(t, ctx); m.Text != "later" {
		t.Errorf("redelivered %q, want later", m.Text)
	}
	rec2.expectNone(t, 300*time.Millisecond)
	eventually(t, "duplicate deleted from SIM", func() bool { return sim.Stored() == 0 })

	// The running Line sees the duplicate PDU again: same ID, not delivered.
	if err := sim.DeliverPDU(stored[0].PDU); err != nil {
		t.Fatal(err)
	}
	eventually(t, "duplicate deleted from SIM", func() bool { return sim.Stored() == 0 })
	rec2.expectNone(t, 200*time.Millisecond)
	var n int
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_sms_inbox WHERE id=$1`, first.ID).Scan(&n); err != nil || n != 1 {
		t.Errorf("inbox rows for %s = %d, %v", first.ID, n, err)
	}
}

func TestHandlerRetry(t *testing.T) {
	sim := startSim(t, modemsim.Options{})
	db := testDB(t)
	line, rec := openLine(t, db, Config{ID: "line1", Device: sim.Path()}, 3)
	ctx := testCtx(t)
	if err := line.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"one", "two"} {
		if err := sim.Deliver(alice, text); err != nil {
			t.Fatal(err)
		}
	}
	a, b := rec.wait(t, ctx), rec.wait(t, ctx)
	if a.Text != "one" || b.Text != "two" {
		t.Errorf("order = %q, %q", a.Text, b.Text)
	}
	rec.expectNone(t, 200*time.Millisecond)
	rec.mu.Lock()
	calls := rec.calls
	rec.mu.Unlock()
	if calls != 5 {
		t.Errorf("handler calls = %d, want 3 failures + 2 successes", calls)
	}
}

func TestBadPDUKeptAndDeleted(t *testing.T) {
	s := newSimLine(t, modemsim.Options{}, Config{})
	ctx := testCtx(t)
	if err := s.line.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	// SMSC +15550000000, then an SMS-DELIVER cut inside its address.
	const bad = "07915155000000F0040B9151"
	if err := s.sim.DeliverPDU(bad); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bad PDU deleted", func() bool { return s.sim.Stored() == 0 && countPrefix(s.sim.Commands(), "AT+CMGD=") == 1 })
	var pduHex, reason string
	if err := s.db.QueryRow(ctx, `SELECT pdu, reason FROM bubbled_sms_bad_pdu WHERE line_id=$1`, "line1").Scan(&pduHex, &reason); err != nil {
		t.Fatalf("bad PDU not stored: %v", err)
	}
	if pduHex != bad || !strings.Contains(reason, "decode") {
		t.Errorf("stored %q (%q)", pduHex, reason)
	}
	// Reception goes on.
	if err := s.sim.Deliver(alice, "still working"); err != nil {
		t.Fatal(err)
	}
	if m := s.rec.wait(t, ctx); m.Text != "still working" {
		t.Errorf("text = %q", m.Text)
	}
}

func TestStatusReports(t *testing.T) {
	cases := []struct {
		name string
		opts modemsim.Options
	}{
		{name: "CDS with CNMA"},
		{name: "CDS without CSMS", opts: modemsim.Options{NoCSMS: true}},
		{name: "no ds=1 falls back to ds=0", opts: modemsim.Options{CNMIModes: "(0-3),(0-3),(0),(0),(0,1)", DefaultCNMI: "0,0,0,0,0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSimLine(t, tc.opts, Config{StatusReports: true})
			ctx := testCtx(t)
			if err := s.line.StartReceiving(ctx); err != nil {
				t.Fatal(err)
			}
			res := mustSend(t, ctx, s.line, bob, "report me")
			sent, err := s.sim.WaitSent(ctx, 1)
			if err != nil || !sent[0].StatusReport {
				t.Fatalf("sent = %+v, %v; want TP-SRR set", sent, err)
			}
			if err := s.sim.DeliverStatusReport(res.MRs[0], 0); err != nil {
				t.Fatal(err)
			}
			if err := s.sim.Deliver(alice, "after the report"); err != nil {
				t.Fatal(err)
			}
			if m := s.rec.wait(t, ctx); m.Text != "after the report" {
				t.Errorf("text = %q", m.Text)
			}
			eventually(t, "no unacked PDU", func() bool { return len(s.sim.Pending()) == 0 && s.sim.Stored() == 0 })
		})
	}
}

func TestSend(t *testing.T) {
	cases := []struct {
		name      string
		to, text  string
		wantParts int
	}{
		{name: "single GSM", to: bob, text: "Hello {world} €5", wantParts: 1},
		{name: "3-part GSM", to: bob, text: longGSM, wantParts: 3},
		{name: "3-part UCS-2 emoji", to: alice, text: longUCS2, wantParts: 3},
		{name: "national number", to: "07700900123", text: "national", wantParts: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSimLine(t, modemsim.Options{}, Config{})
			ctx := testCtx(t)
			res := mustSend(t, ctx, s.line, tc.to, tc.text)
			sent, err := s.sim.WaitSent(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			got := sent[0]
			if got.Text != tc.text || got.To != tc.to || got.Parts != tc.wantParts {
				t.Errorf("sim got %q to %q in %d parts; want %q to %q in %d", got.Text, got.To, got.Parts, tc.text, tc.to, tc.wantParts)
			}
			if res.Parts != tc.wantParts || !slices.Equal(res.MRs, got.MRs) {
				t.Errorf("result %+v, sim MRs %v", res, got.MRs)
			}
			for _, p := range got.PDUs {
				if p != strings.ToUpper(p) {
					t.Errorf("lower-case hex sent: %s", p)
				}
			}
			if tc.wantParts > 1 && countPrefix(s.sim.Commands(), "AT+CMMS=2") != 1 {
				t.Errorf("no AT+CMMS=2 before a multipart message")
			}
		})
	}
}

// Concatenation references come from a persisted counter: distinct across
// messages and across Line restarts.
func TestSendConcatRefs(t *testing.T) {
	sim := startSim(t, modemsim.Options{})
	db := testDB(t)
	cfg := Config{ID: "line1", Device: sim.Path()}
	ctx := testCtx(t)
	l1, _ := openLine(t, db, cfg, 0)
	for range 2 {
		mustSend(t, ctx, l1, bob, longGSM)
	}
	if err := l1.Close(); err != nil {
		t.Fatal(err)
	}
	l2, _ := openLine(t, db, cfg, 0)
	mustSend(t, ctx, l2, bob, longUCS2)
	sent, err := sim.WaitSent(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	r0, r1, r2 := sent[0].ConcatRef, sent[1].ConcatRef, sent[2].ConcatRef
	if r1 != (r0+1)%256 || r2 != (r1+1)%256 {
		t.Errorf("concat refs %d %d %d, want consecutive", r0, r1, r2)
	}
}

// TestSendErrors runs the send errors through the outbox (the real path).
func TestSendErrors(t *testing.T) {
	t.Run("CMS error typed", func(t *testing.T) {
		cases := []struct {
			code      int
			temporary bool
		}{{38, true}, {42, true}, {21, false}, {96, false}}
		// One try only: a temporary refusal then fails at once too, and
		// its reason tells the two kinds apart.
		s := newSimLine(t, modemsim.Options{}, Config{MaxAttempts: 1})
		ctx := testCtx(t)
		for _, tc := range cases {
			s.sim.FailNextCMGS(tc.code)
			_, oc := send(t, ctx, s.line, bob, "fails")
			cms := &CMSError{Code: oc.Code}
			if oc.Kind != OutcomeFailed || oc.Code != tc.code || cms.Temporary() != tc.temporary {
				t.Errorf("code %d: outcome %s code %d (%s), want failed with CMSError temporary=%v", tc.code, oc.Kind, oc.Code, oc.Reason, tc.temporary)
			}
			if want := cmsReason(cms); !strings.HasPrefix(oc.Reason, want) {
				t.Errorf("code %d: reason %q, want it to start with %q", tc.code, oc.Reason, want)
			}
			if got := strings.Contains(oc.Reason, "gave up after 1 tries"); got != tc.temporary {
				t.Errorf("code %d: reason %q: retried as temporary = %v, want %v", tc.code, oc.Reason, got, tc.temporary)
			}
		}
		// The line still works.
		mustSend(t, ctx, s.line, bob, "works")
	})
	t.Run("CMS error on second part", func(t *testing.T) {
		n := 0 // only touched by the peer goroutine
		p := startPeer(t, func(cmd string) string {
			if strings.HasPrefix(cmd, "AT+CMGS=") {
				n++
				if n == 2 {
					return "\r\n+CMS ERROR: 42\r\n"
				}
				return "\r\n+CMGS: " + strconv.Itoa(n) + "\r\n\r\nOK\r\n"
			}
			return "\r\nOK\r\n"
		})
		l := NewLine(Config{ID: "x", Device: p.path(), CommandTimeout: time.Second, MaxAttempts: 1, WatchdogInterval: -1}, testDB(t), testLog(t), nil)
		t.Cleanup(func() { _ = l.Close() })
		ctx := testCtx(t)
		if err := l.Open(ctx); err != nil {
			t.Fatal(err)
		}
		_, oc := send(t, ctx, l, bob, longGSM)
		if cms := (&CMSError{Code: oc.Code}); oc.Kind != OutcomeFailed || oc.Code != 42 || !cms.Temporary() ||
			!strings.Contains(oc.Reason, "1 of 3 parts were sent before") {
			t.Errorf("outcome = %+v", oc)
		}
		if len(oc.MRs) != 3 || oc.MRs[0] != 1 || oc.MRs[1] != -1 || oc.MRs[2] != -1 {
			t.Errorf("MRs = %v, want the first part only", oc.MRs)
		}
		if got := countPrefix(p.commands(), "AT+CMGS="); got != 2 {
			t.Errorf("%d parts tried, want to stop after the failed second", got)
		}
	})
	t.Run("too long", func(t *testing.T) {
		s := newSimLine(t, modemsim.Options{}, Config{MaxParts: 2})
		err := s.line.Enqueue(testCtx(t), OutMessage{ID: "$long", To: bob, Text: longGSM})
		if !errors.Is(err, pdu.ErrTooLong) || !strings.Contains(err.Error(), "3") {
			t.Errorf("err = %v, want ErrTooLong saying 3 parts", err)
		}
		if n, _ := s.line.QueueLength(testCtx(t)); n != 0 {
			t.Errorf("queued %d messages, want none", n)
		}
		if countPrefix(s.sim.Commands(), "AT+CMGS") != 0 {
			t.Error("sent parts of a too long message")
		}
	})
	t.Run("timeout is unknown, never resent", func(t *testing.T) {
		// A grace too short for the late answer: the part stays unknown.
		s := newSimLine(t, modemsim.Options{}, Config{SendTimeout: 200 * time.Millisecond, CommandTimeout: time.Second, LateReplyGrace: time.Nanosecond})
		ctx := testCtx(t)
		s.sim.SetDelay("+CMGS", 500*time.Millisecond)
		if _, oc := send(t, ctx, s.line, bob, "slow network"); oc.Kind != OutcomeUnknown {
			t.Fatalf("outcome = %+v, want unknown", oc)
		}
		s.sim.SetDelay("+CMGS", 0)
		res := mustSend(t, ctx, s.line, bob, "next one")
		sent, err := s.sim.WaitSent(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		if sent[0].Text != "slow network" || sent[1].Text != "next one" || len(sent) != 2 {
			t.Errorf("sim sent %+v", sent)
		}
		if res.MRs[0] != sent[1].MRs[0] {
			t.Errorf("MR %d credited to the second message, sim says %d", res.MRs[0], sent[1].MRs[0])
		}
	})
	t.Run("hung modem: nothing sent", func(t *testing.T) {
		s := newSimLine(t, modemsim.Options{}, Config{SendTimeout: 200 * time.Millisecond, CommandTimeout: 200 * time.Millisecond})
		ctx := testCtx(t)
		out := outcomesOf(s.line)
		s.sim.Hang(true)
		if err := s.line.Enqueue(ctx, OutMessage{ID: "$void", To: bob, Text: "into the void"}); err != nil {
			t.Fatal(err)
		}
		// No prompt: the outbox keeps the message (nothing was sent, so
		// it is neither sent nor unknown) and asks care to recover.
		eventually(t, "recovery", func() bool { return s.line.State() != StateReady })
		if got := out.of("$void"); len(got) != 0 {
			t.Errorf("outcomes = %v, want none", got)
		}
		if n, _ := s.line.QueueLength(ctx); n != 1 {
			t.Errorf("queue length %d, want the message kept", n)
		}
	})
}

func TestPIN(t *testing.T) {
	t.Run("manual", func(t *testing.T) {
		s := newSimLine(t, modemsim.Options{PIN: "1234"}, Config{})
		ctx := testCtx(t)
		st, err := s.line.PINStatus(ctx)
		if err != nil || st != "SIM PIN" {
			t.Fatalf("PINStatus = %q, %v", st, err)
		}
		if err := s.line.EnterPIN(ctx, "12a4"); err == nil {
			t.Error("accepted a non-numeric PIN")
		}
		err = s.line.EnterPIN(ctx, "0000")
		if at.CMECode(err) != 16 {
			t.Errorf("wrong PIN: err = %v, want CME 16", err)
		}
		if err := s.line.EnterPIN(ctx, "1234"); err != nil {
			t.Fatalf("EnterPIN: %v", err)
		}
		if st, _ := s.line.PINStatus(ctx); st != "READY" {
			t.Errorf("status after PIN = %q", st)
		}
		if err := s.line.StartReceiving(ctx); err != nil {
			t.Fatal(err)
		}
		mustSend(t, ctx, s.line, bob, "unlocked")
	})
	t.Run("from config", func(t *testing.T) {
		s := newSimLine(t, modemsim.Options{PIN: "4321"}, Config{PIN: "4321"})
		ctx := testCtx(t)
		if st, err := s.line.PINStatus(ctx); err != nil || st != "READY" {
			t.Fatalf("PINStatus = %q, %v", st, err)
		}
		mustSend(t, ctx, s.line, bob, "auto")
	})
	t.Run("wrong PIN in config is tried once", func(t *testing.T) {
		sim := startSim(t, modemsim.Options{PIN: "4321"})
		l := NewLine(Config{ID: "x", Device: sim.Path(), PIN: "1111"}, testDB(t), testLog(t), newRecorder().handle)
		t.Cleanup(func() { _ = l.Close() })
		err := l.Open(testCtx(t))
		if at.CMECode(err) != 16 {
			t.Fatalf("Open = %v, want CME 16", err)
		}
		if n := countPrefix(sim.Commands(), "AT+CPIN=\""); n != 1 {
			t.Errorf("PIN tried %d times", n)
		}
	})
}

func TestOwnNumber(t *testing.T) {
	cases := []struct {
		name string
		sim  string
		cfg  string
		want string
	}{
		{name: "from SIM", sim: "+15550001111", want: "+15550001111"},
		{name: "unknown", want: ""},
		{name: "config wins", sim: "+15550001111", cfg: "+15559999999", want: "+15559999999"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSimLine(t, modemsim.Options{OwnNumber: tc.sim}, Config{OwnNumber: tc.cfg})
			got, err := s.line.OwnNumber(testCtx(t))
			if err != nil || got != tc.want {
				t.Errorf("OwnNumber = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestNoPDUMode(t *testing.T) {
	p := startPeer(t, okScript(map[string]string{"AT+CMGF=0": "\r\n+CMS ERROR: 303\r\n"}))
	l := NewLine(Config{ID: "x", Device: p.path(), CommandTimeout: time.Second}, testDB(t), testLog(t), nil)
	t.Cleanup(func() { _ = l.Close() })
	err := l.Open(testCtx(t))
	if !errors.Is(err, ErrNoPDUMode) {
		t.Fatalf("Open = %v, want ErrNoPDUMode", err)
	}
}

// The scripted peer checks the order of the init probes, the handling of a
// stored SUBMIT (skipped, not deleted) and of garbage in +CMGL.
func TestInitAndDrainWithScriptedModem(t *testing.T) {
	const deliver = "07915155000000F0040B915155214365F700002260101200000005C8329BFD06"
	const submit = "0011000B915155214365F70000AA05C8329BFD06"
	p := startPeer(t, okScript(map[string]string{
		"AT+CSMS=1":                    "\r\nERROR\r\n",
		"AT+CPMS=?":                    "\r\n+CPMS: (\"ME\",\"SM\"),(\"ME\",\"SM\"),(\"ME\")\r\n\r\nOK\r\n",
		"AT+CNMI=2,1,0,0,0":            "\r\n+CMS ERROR: 303\r\n",
		"AT+CPIN?":                     "\r\n+CPIN: READY\r\n\r\nOK\r\n",
		"AT+CMGL=4":                    "\r\n+CMGL: 0,3,,20\r\n" + submit + "\r\nnoise\r\n+CMGL: 1,0,,24\r\n" + deliver + "\r\n\r\nOK\r\n",
		"AT+CPMS=\"ME\",\"ME\",\"ME\"": "\r\n+CPMS: 2,50,2,50,2,50\r\n\r\nOK\r\n",
	}))
	rec := newRecorder()
	l := NewLine(Config{ID: "x", Device: p.path(), CommandTimeout: time.Second}, testDB(t), testLog(t), rec.handle)
	t.Cleanup(func() { _ = l.Close() })
	ctx := testCtx(t)
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	if m := rec.wait(t, ctx); m.Text != "Hello" || m.From != "+15551234567" {
		t.Errorf("got %+v", m)
	}
	want := []string{"ATZ", "ATE0", "AT+CMEE=1", "AT+CPIN?", "AT+CMGF=0", "AT+CSMS=1", "AT+CPMS=?",
		`AT+CPMS="ME","ME","ME"`, "AT+CNMI=2,1,0,0,0", "AT+CNMI=1,1,0,0,0", "AT+CLIP=1", "AT+CMGL=4", "AT+CMGD=1"}
	if got := p.commands(); !slices.Equal(got, want) {
		t.Errorf("commands:\n got %q\nwant %q", got, want)
	}
	// A malformed indication is logged and ignored.
	p.write("\r\n+CMTI: \"ME\",banana\r\n")
	p.write("\r\n+CMTI: \"SM\",7\r\n")
	eventually(t, "CPMS switch for another storage", func() bool {
		return slices.Contains(p.commands(), `AT+CPMS="SM"`) && slices.Contains(p.commands(), "AT+CMGR=7")
	})
}

func TestReconnect(t *testing.T) {
	sim := startSim(t, modemsim.Options{})
	link := filepath.Join(t.TempDir(), "modem")
	if err := sim.Link(link); err != nil {
		t.Fatal(err)
	}
	states := make(chan State, 10)
	cfg := Config{ID: "line1", Device: link, OnStateChange: func(s State, _ error) { states <- s }}
	line, rec := openLine(t, testDB(t), cfg, 0)
	ctx := testCtx(t)
	if err := line.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	waitState := func(want State) {
		t.Helper()
		for {
			select {
			case s := <-states:
				if s == want {
					return
				}
			case <-ctx.Done():
				t.Fatalf("never reached state %v", want)
			}
		}
	}
	waitState(StateReady)
	sim.Unplug()
	waitState(StateDisconnected)
	// The outbox takes a message while the port is gone and sends it
	// after the replug.
	out := outcomesOf(line)
	if err := line.Enqueue(ctx, OutMessage{ID: "$unplugged", To: bob, Text: "while unplugged"}); err != nil {
		t.Errorf("Enqueue while unplugged = %v, want it queued", err)
	}
	if got := out.of("$unplugged"); slices.Contains(got, OutcomeSent) {
		t.Errorf("sent while unplugged: %v", got)
	}
	if err := sim.StoreOnly(alice, "arrived while unplugged"); err != nil {
		t.Fatal(err)
	}
	if err := sim.Replug(); err != nil {
		t.Fatal(err)
	}
	waitState(StateReady)
	if m := rec.wait(t, ctx); m.Text != "arrived while unplugged" {
		t.Errorf("text = %q", m.Text)
	}
	if err := sim.Deliver(alice, "after replug"); err != nil {
		t.Fatal(err)
	}
	if m := rec.wait(t, ctx); m.Text != "after replug" {
		t.Errorf("text = %q", m.Text)
	}
	out.wait(t, "$unplugged", OutcomeSent)
	mustSend(t, ctx, line, bob, "after replug")
	if err := line.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if line.State() != StateClosed {
		t.Errorf("state after Close = %v", line.State())
	}
}

func BenchmarkSend(b *testing.B) {
	sim := startSim(b, modemsim.Options{})
	line, _ := openLine(b, testDB(b), Config{ID: "bench", Device: sim.Path()}, 0)
	ctx := context.Background()
	b.ResetTimer()
	parts := 0
	for b.Loop() {
		res := mustSend(b, ctx, line, bob, longGSM)
		parts += res.Parts
	}
	b.ReportMetric(float64(parts)/b.Elapsed().Seconds(), "parts/s")
}

// Upstream bug 8: at runs each indication handler in its own goroutine, so
// URCs can be handled out of order. The Line keeps wire order.
func TestReceiveOrder(t *testing.T) {
	s := newSimLine(t, modemsim.Options{}, Config{})
	ctx := testCtx(t)
	if err := s.line.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for i := range 20 {
		text := "message " + strconv.Itoa(i)
		want = append(want, text)
		if err := s.sim.Deliver(alice, text); err != nil {
			t.Fatal(err)
		}
	}
	for range want {
		got = append(got, s.rec.wait(t, ctx).Text)
	}
	if !slices.Equal(got, want) {
		t.Errorf("order:\n got %q\nwant %q", got, want)
	}
}

// A tcp:// device (ser2net) works like a serial port.
func TestTCPDevice(t *testing.T) {
	sim := startSim(t, modemsim.Options{OwnNumber: alice})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() { // a one-connection ser2net
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		port, _, err := at.OpenPort(context.Background(), sim.Path(), DefaultBaud)
		if err != nil {
			return
		}
		defer port.Close()
		go func() { _, _ = io.Copy(port, c) }()
		_, _ = io.Copy(c, port)
	}()
	line, _ := openLine(t, testDB(t), Config{ID: "tcp", Device: "tcp://" + ln.Addr().String()}, 0)
	ctx := testCtx(t)
	if n, err := line.OwnNumber(ctx); err != nil || n != alice {
		t.Errorf("OwnNumber = %q, %v", n, err)
	}
	mustSend(t, ctx, line, bob, "over tcp")
	if sent, err := sim.WaitSent(ctx, 1); err != nil || sent[0].Text != "over tcp" {
		t.Errorf("sent = %+v, %v", sent, err)
	}
}
