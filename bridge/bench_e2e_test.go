package bridge_test

// Benchmarks of the whole path through the real daemon: modemsim on a pty,
// the bubbled binary built by TestMain, Dendrite, and an E2EE Matrix client.
// They are benchmarks, not timed tests: `go test` without -bench never runs
// them, and nothing here fails on a slow figure.
//
//	go test -tags goolm -run '^$' -bench . -benchtime 50x ./bridge/
//
// The simulator is zero-latency by default: it answers every AT command, and
// +CMGS as soon as the PDU's ^Z arrives, with no delay unless a test sets one
// with Sim.SetDelay (these benchmarks never do). What is measured is bubbled,
// Dendrite, the Matrix client and the pty between them. The simulator and the
// client run in the test process, so bubbled's CPU figures do not include them.

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// benchSetup runs setup inside a test, because the helpers of e2e_test.go
// (env, user) hold a *testing.T and a benchmark has none, and keeps that test
// running, with the environment its cleanups tear down, until b's cleanup.
// The test is run with testing.RunTests under the name "<benchmark>/env"; a
// failure there prints the test's log and fails b.
//
// Only setup may use the env's and user's t-based helpers: they call
// t.FailNow, which must run on the test's goroutine. The benchmark's own
// goroutine uses the t-free helpers below.
func benchSetup[E any](b *testing.B, setup func(t *testing.T) E) E {
	b.Helper()
	procs := runtime.GOMAXPROCS(0)
	ready := make(chan E, 1)
	release := make(chan struct{})
	finished := make(chan bool, 1)
	var calls atomic.Int32
	test := testing.InternalTest{Name: b.Name() + "/env", F: func(t *testing.T) {
		// RunTests repeats its tests for -count and each -cpu value; the
		// environment is needed once, and those runs come only after
		// release.
		if calls.Add(1) > 1 {
			t.SkipNow()
		}
		runtime.GOMAXPROCS(procs) // RunTests set it from -cpu
		ready <- setup(t)
		<-release
	}}
	go func() {
		all := func(string, string) (bool, error) { return true, nil }
		finished <- testing.RunTests(all, []testing.InternalTest{test})
	}()
	select {
	case v := <-ready:
		b.Cleanup(func() {
			close(release)
			ok := <-finished
			runtime.GOMAXPROCS(procs)
			if !ok {
				b.Error("tearing down the benchmark environment failed; see the env test's log above")
			}
		})
		return v
	case ok := <-finished:
		runtime.GOMAXPROCS(procs)
		if ok {
			b.Fatal("the environment's setup test did not run (filtered out by -skip?)")
		}
		b.Fatal("setting up the benchmark environment failed; see the env test's log above")
		var zero E
		return zero
	}
}

// benchAwaitMessage waits until u has a message from sender whose body is
// exactly body, or ctx ends. Unlike u.waitMessage it does not use u.t, so
// the benchmark's goroutine may call it. It must be u.changed's only reader
// while it runs.
func benchAwaitMessage(ctx context.Context, u *user, sender id.UserID, body string) (id.RoomID, error) {
	for {
		u.mu.Lock()
		for room, evts := range u.messages {
			for _, evt := range evts {
				if evt.Sender == sender && evt.Content.AsMessage().Body == body {
					u.mu.Unlock()
					return room, nil
				}
			}
		}
		u.mu.Unlock()
		select {
		case <-u.changed:
		case <-ctx.Done():
			return "", fmt.Errorf("wait for %q from %s: %w", body, sender, ctx.Err())
		}
	}
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// benchCPU returns the CPU time (user + system, all threads) the bubbled
// process has used so far. Its resolution is one clock tick, 10 ms.
func benchCPU(b *testing.B, e *env) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", e.proc.Process.Pid))
	if err != nil {
		b.Fatalf("read bubbled's CPU time: %v", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// fields from 3 (state) on follow the last ')'. utime and stime are
	// fields 14 and 15.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		b.Fatalf("read bubbled's CPU time: short /proc stat line %q", s)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			b.Fatalf("read bubbled's CPU time: field %q: %v", f, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// benchProfile, when BUBBLED_BENCH_PROFILE names a file, records a CPU
// profile of the bubbled process (through its metrics listener's
// /debug/pprof/profile) for BUBBLED_BENCH_PROFILE_SECONDS (default 20)
// from now; the returned func waits for it and writes the file.
func benchProfile(b *testing.B, e *env) func() {
	path := os.Getenv("BUBBLED_BENCH_PROFILE")
	if path == "" {
		return func() {}
	}
	secs := os.Getenv("BUBBLED_BENCH_PROFILE_SECONDS")
	if secs == "" {
		secs = "20"
	}
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(e.metricsURL + "/debug/pprof/profile?seconds=" + secs)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err == nil {
			err = os.WriteFile(path, raw, 0o644)
		}
		done <- err
	}()
	return func() {
		if err := <-done; err != nil {
			b.Errorf("CPU profile: %v", err)
		}
	}
}

// reportLatency reports the mean, the median and the 99th percentile
// (nearest rank: with fewer than 100 samples it is the slowest) of lat in
// milliseconds.
func reportLatency(b *testing.B, lat []time.Duration) {
	b.Helper()
	if len(lat) == 0 {
		return
	}
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	rank := func(p float64) time.Duration {
		return sorted[max(int(math.Ceil(p*float64(len(sorted))))-1, 0)]
	}
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(sum)/float64(len(sorted)), "ms-mean")
	b.ReportMetric(ms(rank(0.50)), "ms-p50")
	b.ReportMetric(ms(rank(0.99)), "ms-p99")
}

// BenchmarkInboundSMSToMatrix measures an SMS from the modem to the Matrix
// user's screen: from the simulator's Deliver (stored on the SIM, +CMTI on
// the pty) until alice's E2EE client has decrypted the m.room.message from
// the contact's ghost. Messages go one at a time, each waiting for its
// arrival; the portal exists before the first timed one.
func BenchmarkInboundSMSToMatrix(b *testing.B) {
	type fixture struct {
		e     *env
		alice *user
	}
	ghost := ghostMXID(contactNumber)
	f := benchSetup(b, func(t *testing.T) fixture {
		e := newEnv(t)
		alice := e.newUser("alice")
		e.login(alice)
		if err := e.sim.Deliver(contactNumber, "warm-up"); err != nil {
			t.Fatal(err)
		}
		alice.waitMessage(60*time.Second, ghost, func(body string) bool { return body == "warm-up" })
		return fixture{e, alice}
	})
	var lat []time.Duration
	for b.Loop() {
		body := fmt.Sprintf("inbound benchmark %d", len(lat))
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		start := time.Now()
		if err := f.e.sim.Deliver(contactNumber, body); err != nil {
			b.Fatal(err)
		}
		_, err := benchAwaitMessage(ctx, f.alice, ghost, body)
		lat = append(lat, time.Since(start))
		cancel()
		if err != nil {
			b.Fatalf("%v; bubbled's log:\n%s", err, f.e.tail())
		}
	}
	reportLatency(b, lat)
}

// BenchmarkOutboundMatrixToPDU measures a message from the Matrix user to
// the modem: from alice's client sending m.text in the encrypted portal
// until the simulator has decoded the SMS-SUBMIT from the pty. Both
// sub-benchmarks send single-part GSM 7-bit texts in one environment, in
// which the portal exists and the first reply (with its "not on Matrix"
// notice) has gone out.
//
// cpu-ms/part is bubbled's CPU time (utime+stime of the process) over the
// run divided by the SMS parts the modem received; it includes everything
// the daemon does meanwhile (appservice transaction, Megolm decryption,
// router, database, PDU, AT, message status events back to Matrix).
//
//   - sequential: one message at a time, each waiting for its PDU; reports
//     the latency.
//   - burst: b.N messages sent back to back (each SendText waits only for
//     Dendrite to accept the event), then waits for all of them; reports
//     parts/s over the whole run and ms-drain, the time from the client's
//     last send to the modem's last part. The client sends one event at a
//     time (Megolm encryption, then an HTTP round trip to Dendrite), so
//     while ms-drain stays below one sequential latency the daemon keeps up
//     and parts/s is the client's rate, not bubbled's limit.
func BenchmarkOutboundMatrixToPDU(b *testing.B) {
	type fixture struct {
		e     *env
		alice *user
		room  id.RoomID
	}
	f := benchSetup(b, func(t *testing.T) fixture {
		// At the default log level (info), as deployed: the tests' debug
		// level passes every mautrix line through the zerolog-to-zap
		// adapter, about a tenth of the daemon's CPU here.
		// BUBBLED_LOG__LEVEL=debug in the environment measures that.
		e := newEnvWith(t, envOptions{sim: modemsim.Options{OwnNumber: lineNumber, Echo: true}, env: []string{"BUBBLED_LOG__LEVEL=" + cmp.Or(os.Getenv("BUBBLED_LOG__LEVEL"), "info")}})
		alice := e.newUser("alice")
		e.login(alice)
		if err := e.sim.Deliver(contactNumber, "warm-up"); err != nil {
			t.Fatal(err)
		}
		_, room := alice.waitMessage(60*time.Second, ghostMXID(contactNumber), func(body string) bool { return body == "warm-up" })
		if _, err := alice.cli.SendText(context.Background(), room, "warm-up reply"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if _, err := e.sim.WaitSent(ctx, 1); err != nil {
			t.Fatalf("the modem saw no warm-up SMS: %v; log:\n%s", err, e.tail())
		}
		alice.waitMessage(30*time.Second, botMXID, func(body string) bool { return strings.Contains(body, "is not on Matrix") })
		return fixture{e, alice, room}
	})
	send := func(b *testing.B, body string) {
		b.Helper()
		if _, err := f.alice.cli.SendText(context.Background(), f.room, body); err != nil {
			b.Fatalf("send %q: %v", body, err)
		}
	}

	b.Run("sequential", func(b *testing.B) {
		var lat []time.Duration
		parts := 0
		cpu0 := benchCPU(b, f.e)
		for b.Loop() {
			n := len(f.e.sim.Sent())
			body := fmt.Sprintf("outbound benchmark %d", n)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			start := time.Now()
			send(b, body)
			sent, err := f.e.sim.WaitSent(ctx, n+1)
			lat = append(lat, time.Since(start))
			cancel()
			if err != nil {
				b.Fatalf("%v; bubbled's log:\n%s", err, f.e.tail())
			}
			if got := sent[n]; got.To != contactNumber || got.Text != body {
				b.Fatalf("modem got %q to %s, want %q to %s", got.Text, got.To, body, contactNumber)
			}
			parts += sent[n].Parts
		}
		cpu := benchCPU(b, f.e) - cpu0
		reportLatency(b, lat)
		b.ReportMetric(float64(cpu)/float64(time.Millisecond)/float64(parts), "cpu-ms/part")
	})

	b.Run("burst", func(b *testing.B) {
		n0 := len(f.e.sim.Sent())
		want := map[string]bool{}
		// What bubbled spends with nothing to do (timers, the runtime):
		// the burst lasts as long as the homeserver takes to accept
		// alice's messages (tens of ms each on Dendrite), so idle work
		// would count in cpu-ms/part; idle-cpu-ms/s shows how much.
		idle0, idleStart := benchCPU(b, f.e), time.Now()
		time.Sleep(5 * time.Second)
		idleRate := float64(benchCPU(b, f.e)-idle0) / float64(time.Since(idleStart))
		stopProfile := benchProfile(b, f.e)
		defer stopProfile()
		cpu0 := benchCPU(b, f.e)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second+time.Duration(b.N)*time.Second)
		defer cancel()
		b.ResetTimer()
		for i := range b.N {
			body := fmt.Sprintf("burst benchmark %d.%d", n0, i)
			want[body] = true
			send(b, body)
		}
		lastSend := time.Now()
		sent, err := f.e.sim.WaitSent(ctx, n0+b.N)
		b.StopTimer()
		drain := time.Since(lastSend)
		if err != nil {
			b.Fatalf("%v; bubbled's log:\n%s", err, f.e.tail())
		}
		cpu := benchCPU(b, f.e) - cpu0
		parts := 0
		for _, s := range sent[n0:] {
			if !want[s.Text] || s.To != contactNumber {
				b.Fatalf("modem got %q to %s, want one of the burst's texts once, to %s", s.Text, s.To, contactNumber)
			}
			delete(want, s.Text)
			parts += s.Parts
		}
		b.ReportMetric(float64(parts)/b.Elapsed().Seconds(), "parts/s")
		b.ReportMetric(float64(cpu)/float64(time.Millisecond)/float64(parts), "cpu-ms/part")
		b.ReportMetric(idleRate*1000, "idle-cpu-ms/s")
		b.ReportMetric(float64(drain)/float64(time.Millisecond), "ms-drain")
	})
}
