package sms

import (
	"context"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warthog618/sms/encoding/gsm7"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
	"github.com/bubbled/bubbled/fallback/fallbacktest"
)

// stateLog records state changes and lets a test act on a rung.
type stateLog struct {
	mu     sync.Mutex
	events []string
	act    func(State, RecoveryStep)
}

func (s *stateLog) change(st State, err error) {
	step := RecoveryNone
	var re *RecoveryError
	if errors.As(err, &re) {
		step = re.Step
	}
	s.mu.Lock()
	s.events = append(s.events, st.String()+":"+step.String())
	act := s.act
	s.mu.Unlock()
	if act != nil {
		act(st, step)
	}
}

func (s *stateLog) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

// TestRecoveryLadder breaks the simulated modem in ways each rung fixes and
// checks that the message in flight is sent once the rung fixed it.
func TestRecoveryLadder(t *testing.T) {
	cases := []struct {
		name   string
		link   bool
		break_ func(sim *modemsim.Sim)
		act    func(sim *modemsim.Sim) func(State, RecoveryStep)
		want   RecoveryStep
		rungs  []string
	}{
		{name: "lost command fixed by resync", break_: func(sim *modemsim.Sim) { sim.DropNext(1) }, want: RecoveryResync,
			rungs: []string{"recovering:resynchronise", "ready:none"}},
		{name: "wedged radio fixed by radio off/on", break_: func(sim *modemsim.Sim) { sim.WedgeRadio() }, want: RecoveryRadio,
			rungs: []string{"recovering:resynchronise", "recovering:radio off/on", "ready:none"}},
		{name: "hang fixed by reopening the port", break_: func(sim *modemsim.Sim) { sim.HangUntilReset() }, want: RecoveryReopen,
			rungs: []string{"recovering:resynchronise", "recovering:radio off/on", "recovering:reopen port", "ready:none"}},
		{name: "device re-enumerated", link: true, break_: func(sim *modemsim.Sim) { sim.Hang(true) }, want: RecoveryWaitDevice,
			act: func(sim *modemsim.Sim) func(State, RecoveryStep) {
				return func(st State, step RecoveryStep) {
					switch {
					case step == RecoveryReopen:
						sim.Unplug() // the USB device drops off the bus
					case st == StateDisconnected:
						go func() {
							time.Sleep(100 * time.Millisecond)
							_ = sim.Replug() // and comes back at its by-id path
						}()
					}
				}
			},
			rungs: []string{"recovering:resynchronise", "recovering:radio off/on", "recovering:reopen port", "disconnected:wait for device", "ready:none"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sl := &stateLog{}
			cfg := Config{CommandTimeout: 300 * time.Millisecond, SendTimeout: 300 * time.Millisecond,
				LateReplyGrace: 100 * time.Millisecond, OnStateChange: sl.change}
			var o *outLine
			if tc.link {
				sim := startSim(t, modemsim.Options{})
				link := t.TempDir() + "/usb-Modem_Sim-if00"
				if err := sim.Link(link); err != nil {
					t.Fatal(err)
				}
				cfg.Device = link
				o = newOutLine(t, modemsim.Options{}, cfg, false)
				o.sim = sim
			} else {
				o = newOutLine(t, modemsim.Options{}, cfg, false)
			}
			o.open(t)
			if tc.act != nil {
				sl.mu.Lock()
				sl.act = tc.act(o.sim)
				sl.mu.Unlock()
			}
			before := len(sl.all())
			tc.break_(o.sim)
			o.enqueue(t, "$m", bob, "through the storm")
			o.out.wait(t, "$m", OutcomeSent)
			if got := o.line.LastRecovery(); got != tc.want {
				t.Errorf("fixed by %s, want %s", got, tc.want)
			}
			if got := sl.all()[before:]; !slices.Equal(got, tc.rungs) {
				t.Errorf("states %v, want %v", got, tc.rungs)
			}
			if sent := o.sim.Sent(); len(sent) != 1 || sent[0].Text != "through the storm" {
				t.Errorf("sim sent %+v", sent)
			}
		})
	}
}

// TestUnplugMidBurst: a multipart burst survives an unplug/replug: nothing
// lost, at most the part in flight sent twice.
func TestUnplugMidBurst(t *testing.T) {
	sim := startSim(t, modemsim.Options{})
	link := t.TempDir() + "/usb-Modem_Sim-if00"
	if err := sim.Link(link); err != nil {
		t.Fatal(err)
	}
	o := newOutLine(t, modemsim.Options{}, Config{Device: link}, false)
	o.sim = sim
	o.line.retry.Initial = 20 * time.Millisecond
	o.open(t)
	sim.SetDelay("+CMGS", 30*time.Millisecond)
	for i := 0; i < 8; i++ {
		o.enqueue(t, "$"+string(rune('a'+i)), bob, strings.Repeat(string(rune('a'+i)), 400))
	}
	eventually(t, "burst under way", func() bool { return len(sim.SendLog()) >= 5 })
	sim.Unplug()
	time.Sleep(100 * time.Millisecond)
	if err := sim.Replug(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		o.out.wait(t, "$"+string(rune('a'+i)), OutcomeSent)
	}
	seen := map[string]int{}
	for _, r := range sim.SendLog() {
		if r.MR >= 0 {
			seen[r.PDU]++
		}
	}
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	if len(seen) != 8*3 || dups > 1 {
		t.Errorf("%d distinct parts (want 24), %d duplicates (want at most 1)", len(seen), dups)
	}
}

// TestWatchdog re-applies +CNMI the modem dropped and drains what it
// stored silently meanwhile.
func TestWatchdog(t *testing.T) {
	clk := fallbacktest.NewClock(time.Now())
	o := newOutLine(t, modemsim.Options{}, Config{Clock: clk, WatchdogInterval: 45 * time.Second}, true)
	want := o.sim.CNMI()
	o.sim.DropRouting()
	if err := o.sim.Deliver(alice, "while routing was off"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if got := o.rec.delivered(); len(got) != 0 {
		t.Fatalf("delivered %v before the watchdog", got)
	}
	clk.Advance(45 * time.Second)
	m := o.rec.wait(t, testCtx(t))
	if m.Text != "while routing was off" {
		t.Errorf("text %q", m.Text)
	}
	if got := o.sim.CNMI(); got != want {
		t.Errorf("+CNMI %s, want %s restored", got, want)
	}
	if err := o.sim.Deliver(alice, "after"); err != nil {
		t.Fatal(err)
	}
	if m := o.rec.wait(t, testCtx(t)); m.Text != "after" {
		t.Errorf("text %q", m.Text)
	}
}

func TestUSSD(t *testing.T) {
	cases := []struct {
		name  string
		reply string
		dcs   int
		none  bool
		want  string
		err   error
	}{
		{name: "GSM text", reply: "Your balance is 12.50 EUR", dcs: 15, want: "Your balance is 12.50 EUR"},
		{name: "UCS-2 hex", reply: "Баланс: 10 €", dcs: 72, want: "Баланс: 10 €"},
		{name: "no answer", none: true, err: ErrUSSDTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := newOutLine(t, modemsim.Options{}, Config{USSDTimeout: 300 * time.Millisecond}, true)
			o.sim.SetUSSD(func(code string) (string, int, bool) {
				if code != "*100#" {
					return "unknown code", 15, true
				}
				return tc.reply, tc.dcs, !tc.none
			})
			got, err := o.line.USSD(testCtx(t), "*100#")
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Errorf("USSD = %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
	t.Run("packed GSM 7-bit hex", func(t *testing.T) {
		// Packed as USSD septets, sent as hex (Huawei style).
		sept, _ := gsm7.Encode([]byte("Balance 5.00 EUR"))
		packed := strings.ToUpper(hex.EncodeToString(gsm7.Pack7BitUSSD(sept, 0)))
		if got := decodeUSSD(packed, 15); got != "Balance 5.00 EUR" {
			t.Errorf("decoded %q from %s", got, packed)
		}
		if got := decodeUSSD("12345678", 15); got != "12345678" {
			t.Errorf("plain digits decoded to %q", got)
		}
	})
}

// TestMissedCall: one CallHandler call per call, hung up with ATH, kept
// until the handler accepts it.
func TestMissedCall(t *testing.T) {
	o := newOutLine(t, modemsim.Options{}, Config{}, true)
	var mu sync.Mutex
	var calls []Call
	fail := 1
	o.line.ex.calls.setHandler(func(_ context.Context, c Call) error {
		mu.Lock()
		defer mu.Unlock()
		if fail > 0 {
			fail--
			return errors.New("bridge busy")
		}
		calls = append(calls, c)
		return nil
	})
	if err := o.sim.Call("+15559876543"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "call handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(calls) == 1
	})
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 1 || calls[0].From != "+15559876543" {
		t.Errorf("calls %+v", calls)
	}
	if h := o.sim.HangUps(); !slices.Equal(h, []string{"ATH"}) || o.sim.Ringing() {
		t.Errorf("hang-ups %v, ringing %v", h, o.sim.Ringing())
	}
}

func TestStatus(t *testing.T) {
	o := newOutLine(t, modemsim.Options{}, Config{}, true)
	o.sim.SetSignal(15)
	o.sim.SetOperator("TestNet")
	o.sim.SetRegistration(5)
	st, err := o.line.Status(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := ModemStatus{State: StateReady, SIM: "READY", Manufacturer: modemsim.Manufacturer, Model: modemsim.Model,
		Revision: modemsim.Revision, IMEI: "***********7518", Operator: "TestNet", Registered: true, Registration: "roaming",
		RSSI: 15, SignalDBm: -83, SignalBars: 3, SMSC: modemsim.DefaultSMSC}
	if *st != want {
		t.Errorf("status\n got %+v\nwant %+v", *st, want)
	}
}

func TestPUKNeverTriesPIN(t *testing.T) {
	o := newOutLine(t, modemsim.Options{PIN: "1234"}, Config{}, false)
	if err := o.line.Open(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		_ = o.line.EnterPIN(testCtx(t), "0000")
	}
	before := countPrefix(o.sim.Commands(), "AT+CPIN=")
	err := o.line.EnterPIN(testCtx(t), "1234")
	if !errors.Is(err, ErrPUKRequired) {
		t.Errorf("err %v, want ErrPUKRequired", err)
	}
	if after := countPrefix(o.sim.Commands(), "AT+CPIN="); after != before {
		t.Errorf("a PIN was sent to a PUK-locked SIM")
	}
}
