package sms

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
	"github.com/bubbled/bubbled/fallback/fallbacktest"
)

// outcomes is a fake OutcomeHandler recording what it is given.
type outcomes struct {
	mu   sync.Mutex
	list []Outcome
	fail int
}

func (o *outcomes) handle(_ context.Context, oc Outcome) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail > 0 {
		o.fail--
		return fmt.Errorf("bridge busy")
	}
	o.list = append(o.list, oc)
	return nil
}

func (o *outcomes) all() []Outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Outcome(nil), o.list...)
}

// of returns the outcome kinds of message id in order.
func (o *outcomes) of(id string) []OutcomeKind {
	var out []OutcomeKind
	for _, oc := range o.all() {
		if oc.MessageID == id {
			out = append(out, oc.Kind)
		}
	}
	return out
}

func (o *outcomes) last(id string) Outcome {
	var last Outcome
	for _, oc := range o.all() {
		if oc.MessageID == id {
			last = oc
		}
	}
	return last
}

// waitFinal waits until message id has an outcome of kind k.
func (o *outcomes) wait(t testing.TB, id string, k OutcomeKind) Outcome {
	t.Helper()
	var got Outcome
	eventually(t, fmt.Sprintf("%s outcome of %s", k, id), func() bool {
		for _, oc := range o.all() {
			if oc.MessageID == id && oc.Kind == k {
				got = oc
				return true
			}
		}
		return false
	})
	return got
}

// outLine is a simulator with a Line using the outbox.
type outLine struct {
	sim  *modemsim.Sim
	line *Line
	out  *outcomes
	rec  *recorder
	db   *dbutil.Database
	cfg  Config
}

// newOutLine starts a simulator and a Line (not opened when open is false,
// so messages can be queued first).
func newOutLine(t testing.TB, opts modemsim.Options, cfg Config, open bool) *outLine {
	t.Helper()
	sim := startSim(t, opts)
	if cfg.ID == "" {
		cfg.ID = "line1"
	}
	if cfg.Device == "" {
		cfg.Device = sim.Path()
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = 2 * time.Second
	}
	if cfg.SendTimeout == 0 {
		cfg.SendTimeout = 5 * time.Second
	}
	if cfg.WatchdogInterval == 0 {
		cfg.WatchdogInterval = -1
	}
	if cfg.RetryBase == 0 {
		cfg.RetryBase = time.Millisecond
	}
	o := &outLine{sim: sim, db: testDB(t), out: &outcomes{}, rec: newRecorder(), cfg: cfg}
	cfg.OnOutcome = o.out.handle
	o.line = NewLine(cfg, o.db, testLog(t), o.rec.handle)
	o.line.retry = fastRetry
	t.Cleanup(func() { _ = o.line.Close() })
	if open {
		o.open(t)
	}
	return o
}

func (o *outLine) open(t testing.TB) {
	t.Helper()
	ctx := testCtx(t)
	if err := o.line.Open(ctx); err != nil {
		t.Fatalf("open line: %v", err)
	}
	if err := o.line.StartReceiving(ctx); err != nil {
		t.Fatalf("start receiving: %v", err)
	}
}

func (o *outLine) enqueue(t testing.TB, id, to, text string) {
	t.Helper()
	if err := o.line.Enqueue(testCtx(t), OutMessage{ID: id, To: to, Text: text}); err != nil {
		t.Fatalf("enqueue %s: %v", id, err)
	}
}

// TestOutboxStatusReports folds per-part status reports into one outcome.
func TestOutboxStatusReports(t *testing.T) {
	cases := []struct {
		name     string
		opts     modemsim.Options
		text     string
		statuses []byte // one per part, in part order
		want     []OutcomeKind
		reason   string
	}{
		{name: "3 parts delivered", text: longGSM, statuses: []byte{0, 0, 0},
			want: []OutcomeKind{OutcomeSent, OutcomeDelivered}},
		{name: "3 parts delivered via CDSI", opts: modemsim.Options{CNMIModes: "(0-3),(0-3),(0),(0,2),(0,1)"}, text: longGSM, statuses: []byte{0, 0, 0},
			want: []OutcomeKind{OutcomeSent, OutcomeDelivered}},
		{name: "temporary status waits", text: "hi", statuses: []byte{0x21, 0x00},
			want: []OutcomeKind{OutcomeSent, OutcomeDelivered}},
		{name: "permanent failure of one part", text: longGSM, statuses: []byte{0, 0x46, 0},
			want: []OutcomeKind{OutcomeSent, OutcomeFailed}, reason: "expired"},
		{name: "unknown number", text: "hi", statuses: []byte{0x43},
			want: []OutcomeKind{OutcomeSent, OutcomeFailed}, reason: "cannot be reached"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := newOutLine(t, tc.opts, Config{StatusReports: true}, true)
			o.enqueue(t, "$ev1", bob, tc.text)
			sent := o.out.wait(t, "$ev1", OutcomeSent)
			simSent, err := o.sim.WaitSent(testCtx(t), 1)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(sent.MRs, simSent[0].MRs) || !simSent[0].StatusReport {
				t.Fatalf("outcome MRs %v, sim MRs %v (SRR %v)", sent.MRs, simSent[0].MRs, simSent[0].StatusReport)
			}
			// A temporary status reports the same part again later.
			mrs := sent.MRs
			if len(tc.statuses) > len(mrs) {
				mrs = []int{mrs[0], mrs[0]}
			}
			for i, st := range tc.statuses {
				if err := o.sim.DeliverStatusReport(mrs[i], st); err != nil {
					t.Fatal(err)
				}
			}
			final := tc.want[len(tc.want)-1]
			got := o.out.wait(t, "$ev1", final)
			time.Sleep(50 * time.Millisecond) // let any wrong extra outcome arrive
			if kinds := o.out.of("$ev1"); !slices.Equal(kinds, tc.want) {
				t.Errorf("outcomes %v, want %v", kinds, tc.want)
			}
			if !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("reason %q, want it to contain %q", got.Reason, tc.reason)
			}
			eventually(t, "reports consumed", func() bool { return o.sim.Stored() == 0 && len(o.sim.Pending()) == 0 })
		})
	}
}

// TestOutboxBadStatusReport: a corrupted report is kept as a bad PDU and
// reception goes on.
func TestOutboxBadStatusReport(t *testing.T) {
	o := newOutLine(t, modemsim.Options{}, Config{StatusReports: true}, true)
	// SMS-STATUS-REPORT cut after the recipient address.
	if err := o.sim.DeliverPDU("0006050B915155214365F7"); err != nil {
		t.Fatal(err)
	}
	if err := o.sim.Deliver(alice, "still here"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bad report kept", func() bool {
		var n int
		_ = o.db.QueryRow(context.Background(), `SELECT COUNT(*) FROM bubbled_sms_bad_pdu`).Scan(&n)
		return n == 1
	})
	eventually(t, "storage drained", func() bool { return o.sim.Stored() == 0 && len(o.sim.Pending()) == 0 })
}

func TestOutboxErrors(t *testing.T) {
	cases := []struct {
		name     string
		fail     []int // CMS codes of the first tries
		want     OutcomeKind
		reason   string
		attempts int // +CMGS seen by the sim
	}{
		{name: "CMS 38 retried then sent", fail: []int{38, 38}, want: OutcomeSent, attempts: 3},
		{name: "CMS 42 retried then sent", fail: []int{42}, want: OutcomeSent, attempts: 2},
		{name: "CMS 21 fails at once", fail: []int{21}, want: OutcomeFailed, reason: "the network rejected the message", attempts: 1},
		{name: "CMS 1 fails at once", fail: []int{1}, want: OutcomeFailed, reason: "the number does not exist", attempts: 1},
		{name: "CMS 96 fails at once", fail: []int{96}, want: OutcomeFailed, reason: "malformed", attempts: 1},
		{name: "temporary until no tries left", fail: []int{41, 41, 41}, want: OutcomeFailed, reason: "gave up after 3 tries", attempts: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := fallbacktest.NewClock(time.Now())
			o := newOutLine(t, modemsim.Options{}, Config{Clock: clk, MaxAttempts: 3, RetryBase: time.Minute}, true)
			for _, c := range tc.fail {
				o.sim.FailNextCMGS(c)
			}
			o.enqueue(t, "$ev", bob, "hello")
			eventually(t, "final outcome", func() bool {
				clk.Advance(time.Minute) // backoff runs on the fake clock
				k := o.out.last("$ev").Kind
				return k == OutcomeSent || k.Final()
			})
			got := o.out.last("$ev")
			if got.Kind != tc.want || !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("outcome %s %q, want %s containing %q", got.Kind, got.Reason, tc.want, tc.reason)
			}
			if n := len(o.sim.SendLog()); n != tc.attempts {
				t.Errorf("%d AT+CMGS, want %d", n, tc.attempts)
			}
		})
	}
}

// TestOutboxLateReply: a timed-out +CMGS whose PDU reached the modem is
// credited when its late reply comes during resynchronisation, and is
// never sent again when none comes.
func TestOutboxLateReply(t *testing.T) {
	cases := []struct {
		name   string
		delay  time.Duration
		want   OutcomeKind
		reason string
	}{
		{name: "late reply credited", delay: 600 * time.Millisecond, want: OutcomeSent},
		{name: "no reply is unknown", delay: 3 * time.Second, want: OutcomeUnknown, reason: "may or may not have been sent"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := newOutLine(t, modemsim.Options{}, Config{SendTimeout: 300 * time.Millisecond, LateReplyGrace: time.Second, CommandTimeout: time.Second}, true)
			o.sim.SetDelay("+CMGS", tc.delay)
			o.enqueue(t, "$slow", bob, "slow network")
			got := o.out.wait(t, "$slow", tc.want)
			if !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("reason %q, want %q", got.Reason, tc.reason)
			}
			o.sim.SetDelay("+CMGS", 0)
			o.enqueue(t, "$next", bob, "next one")
			next := o.out.wait(t, "$next", OutcomeSent)
			sent, err := o.sim.WaitSent(testCtx(t), 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(sent) != 2 || sent[0].Text != "slow network" || next.MRs[0] != sent[1].MRs[0] {
				t.Errorf("sim sent %+v; next MRs %v", sent, next.MRs)
			}
			if tc.want == OutcomeSent && got.MRs[0] != sent[0].MRs[0] {
				t.Errorf("credited MR %v, sim answered %v", got.MRs, sent[0].MRs)
			}
		})
	}
}

func TestOutboxIdempotentAndResume(t *testing.T) {
	o := newOutLine(t, modemsim.Options{}, Config{}, false)
	// Queued before Open (no modem I/O), twice with the same ID.
	o.enqueue(t, "$a", bob, "one")
	o.enqueue(t, "$a", bob, "one")
	o.enqueue(t, "$b", bob, longGSM)
	if n, err := o.line.QueueLength(testCtx(t)); err != nil || n != 2 {
		t.Fatalf("queue length %d, %v", n, err)
	}
	if oldest, err := o.line.OldestQueued(testCtx(t)); err != nil || oldest.IsZero() || time.Since(oldest) > time.Minute {
		t.Fatalf("oldest queued %v, %v; want the first enqueue's time", oldest, err)
	}
	o.open(t)
	o.out.wait(t, "$b", OutcomeSent)
	if oldest, err := o.line.OldestQueued(testCtx(t)); err != nil || !oldest.IsZero() {
		t.Errorf("oldest queued %v, %v after all were sent; want the zero time", oldest, err)
	}
	sent := o.sim.Sent()
	if len(sent) != 2 || sent[0].Text != "one" || sent[1].Text != longGSM {
		t.Errorf("sim sent %+v", sent)
	}
	if kinds := o.out.of("$a"); !slices.Equal(kinds, []OutcomeKind{OutcomeSent}) {
		t.Errorf("outcomes of $a: %v", kinds)
	}
	if !slices.Contains(o.sim.Commands(), "AT+CMMS=2") {
		t.Error("no AT+CMMS=2 before the multipart burst")
	}
}

// TestOutboxFairTurns: recipients take turns, each recipient's messages
// keep their order.
func TestOutboxFairTurns(t *testing.T) {
	o := newOutLine(t, modemsim.Options{}, Config{}, false)
	carol := "+15557770000"
	for _, m := range []struct{ id, to string }{{"a1", bob}, {"a2", bob}, {"a3", bob}, {"b1", alice}, {"c1", carol}, {"b2", alice}} {
		o.enqueue(t, m.id, m.to, m.id)
	}
	o.open(t)
	sent, err := o.sim.WaitSent(testCtx(t), 6)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, s := range sent {
		order = append(order, s.Text)
	}
	if want := []string{"a1", "b1", "c1", "a2", "b2", "a3"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
}

// TestOutcomesReadOncePerOutcome: a message's Sent outcome is listed from
// the table once; with everything listed handed and nothing new, the pump
// does not ask the table again (it used to, once per outcome).
func TestOutcomesReadOncePerOutcome(t *testing.T) {
	o := newOutLine(t, modemsim.Options{}, Config{}, false)
	o.open(t)
	time.Sleep(200 * time.Millisecond) // the pump's first listing (a previous run's outcomes) is done
	before := o.line.out.listings.Load()
	const n = 20
	for i := range n {
		id := fmt.Sprint("$r", i)
		o.enqueue(t, id, bob, "read once")
		o.out.wait(t, id, OutcomeSent)
	}
	time.Sleep(100 * time.Millisecond) // a stray listing would come now
	if got := o.line.out.listings.Load() - before; got > n+2 {
		t.Errorf("%d outcome listings for %d sent messages, want about one each", got, n)
	}
}

func TestOutboxOutcomeHandlerRetry(t *testing.T) {
	o := newOutLine(t, modemsim.Options{}, Config{}, false)
	o.out.fail = 2
	o.enqueue(t, "$x", bob, "x")
	o.open(t)
	o.out.wait(t, "$x", OutcomeSent)
	if kinds := o.out.of("$x"); !slices.Equal(kinds, []OutcomeKind{OutcomeSent}) {
		t.Errorf("outcomes %v, want each once in order", kinds)
	}
}

// TestPacing: caps hold messages back with one Held outcome each, and they
// go once the period is over (fake clock).
func TestPacing(t *testing.T) {
	loc := time.UTC
	start := time.Date(2026, 3, 10, 22, 0, 0, 0, loc)
	cases := []struct {
		name    string
		cfg     Config
		n       int
		first   int // sent before the cap
		advance time.Duration
		held    string // reason of Held ("" = no Held outcome)
		seed    int    // parts line2 sent today, before the test
	}{
		{name: "per day", cfg: Config{RatePerDay: 2}, n: 4, first: 2, advance: 2 * time.Hour,
			held: "the line's limit of 2 SMS per day is reached; it will be sent after 00:00"},
		{name: "per month", cfg: Config{RatePerMonth: 3}, n: 4, first: 3, advance: 22 * 24 * time.Hour,
			held: "the line's limit of 3 SMS per month is reached; it will be sent after 1 April 00:00"},
		{name: "per user across lines", cfg: Config{UserRatePerDay: 3, UserLines: func() []string { return []string{"line2"} }},
			seed: 2, n: 3, first: 1, advance: 2 * time.Hour,
			held: "your limit of 3 SMS per day across your lines is reached; it will be sent after 00:00"},
		{name: "per user ignores other people's lines", cfg: Config{UserRatePerDay: 3}, seed: 2, n: 3, first: 3},
		{name: "per minute paces silently", cfg: Config{RatePerMinute: 2}, n: 3, first: 2, advance: time.Minute + time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := fallbacktest.NewClock(start)
			cfg := tc.cfg
			cfg.Clock, cfg.Location = clk, loc
			o := newOutLine(t, modemsim.Options{}, cfg, false)
			for i := 0; i < tc.seed; i++ {
				if _, err := o.db.Exec(testCtx(t), `INSERT INTO bubbled_sms_outbox_part (line_id, msg_id, seq, pdu, tpdu_len, state, mr, sent_at, status, reported_at)
					VALUES ('line2', $1, 1, '', 0, 'sent', $2, $3, 0, 0)`, fmt.Sprint("other", i), i, start.Add(-time.Hour).UnixMilli()); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < tc.n; i++ {
				o.enqueue(t, fmt.Sprint("m", i), bob, fmt.Sprint("message ", i))
			}
			o.open(t)
			if _, err := o.sim.WaitSent(testCtx(t), tc.first); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			if got := len(o.sim.Sent()); got != tc.first {
				t.Fatalf("%d sent before the cap lifted, want %d", got, tc.first)
			}
			for i := tc.first; i < tc.n; i++ {
				id := fmt.Sprint("m", i)
				if tc.held == "" {
					continue
				}
				h := o.out.wait(t, id, OutcomeHeld)
				if h.Reason != tc.held {
					t.Errorf("held reason %q, want %q", h.Reason, tc.held)
				}
			}
			clk.Advance(tc.advance)
			if _, err := o.sim.WaitSent(testCtx(t), tc.n); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < tc.n; i++ {
				id := fmt.Sprint("m", i)
				held := 0
				for _, k := range o.out.of(id) {
					if k == OutcomeHeld {
						held++
					}
				}
				want := 0
				if tc.held != "" && i >= tc.first {
					want = 1
				}
				if held != want {
					t.Errorf("%s: %d Held outcomes, want %d", id, held, want)
				}
			}
		})
	}
}

// TestPacingHoldsLateMessages: a message queued while a day cap already
// holds the outbox gets its own Held outcome (its room is told) at once.
func TestPacingHoldsLateMessages(t *testing.T) {
	clk := fallbacktest.NewClock(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
	o := newOutLine(t, modemsim.Options{}, Config{RatePerDay: 1, Clock: clk, Location: time.UTC}, false)
	o.enqueue(t, "m0", bob, "first")
	o.enqueue(t, "m1", bob, "second")
	o.open(t)
	o.out.wait(t, "m1", OutcomeHeld)
	o.enqueue(t, "m2", bob, "queued while held")
	if h := o.out.wait(t, "m2", OutcomeHeld); !strings.Contains(h.Reason, "limit of 1 SMS per day") {
		t.Errorf("held reason %q", h.Reason)
	}
	if n := len(o.sim.Sent()); n != 1 {
		t.Errorf("%d sent, want 1", n)
	}
}
