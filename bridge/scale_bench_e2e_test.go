package bridge_test

// Scale figures of issue 12 through the real daemon (modemsim on a pty,
// Dendrite, an E2EE client). Benchmarks, not timed tests:
//
//	go test -tags goolm -run '^$' -bench 'InboundBurstAtStart|PortalMemory' -benchtime 1x ./bridge/
//
// BUBBLED_BENCH_PORTALS sets the portals of BenchmarkPortalMemory (default 200).

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// BenchmarkInboundBurstAtStart: 100 SMS from 10 contacts (no portals yet)
// wait on the SIM while bubbled is stopped; it is started, and the figure is
// the time from starting the process until alice's client has decrypted the
// last of them (target: within 30 s on Dendrite).
func BenchmarkInboundBurstAtStart(b *testing.B) {
	const total, contacts = 100, 10
	type fixture struct {
		e     *env
		alice *user
		start time.Time
	}
	f := benchSetup(b, func(t *testing.T) fixture {
		e := newEnvWith(t, envOptions{sim: modemsim.Options{OwnNumber: lineNumber, Echo: true, StorageSize: total + 10}})
		alice := e.newUser("alice")
		e.login(alice)
		e.stopBubbled()
		for i := range total {
			if err := e.sim.StoreOnly(burstContact(i%contacts), fmt.Sprintf("burst %d", i)); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		e.startBubbled()
		return fixture{e, alice, start}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for i := range total {
		if _, err := benchAwaitMessage(ctx, f.alice, ghostMXID(burstContact(i%contacts)), fmt.Sprintf("burst %d", i)); err != nil {
			b.Fatalf("%v (SIM still holds %d); log:\n%s", err, f.e.sim.Stored(), f.e.tail())
		}
	}
	b.ReportMetric(time.Since(f.start).Seconds(), "s-all-in-matrix")
}

func burstContact(i int) string { return fmt.Sprintf("+1555700%04d", i) }

// BenchmarkPortalMemory: bubbled's resident memory idle (one line logged
// in, one portal) and after an SMS from each of N new contacts (N portals,
// each an encrypted room on Dendrite), after a forced GC; reports MB and
// the growth per portal in KB (RSS and Go heap in use).
func BenchmarkPortalMemory(b *testing.B) {
	n := 200
	if v, err := strconv.Atoi(os.Getenv("BUBBLED_BENCH_PORTALS")); err == nil && v > 0 {
		n = v
	}
	f := benchSetup(b, func(t *testing.T) *env {
		e := newEnvWith(t, envOptions{sim: modemsim.Options{OwnNumber: lineNumber, Echo: true, StorageSize: 255}})
		alice := e.newUser("alice")
		e.login(alice)
		if err := e.sim.Deliver(contactNumber, "warm-up"); err != nil {
			t.Fatal(err)
		}
		alice.waitMessage(60*time.Second, ghostMXID(contactNumber), func(body string) bool { return body == "warm-up" })
		return e
	})
	rss0, heap0 := benchMemory(b, f)
	delivered := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the SIM holds 255 SMS: deliver while the line empties it
		for i := range n {
			for f.sim.Stored() > 200 {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
			if err := f.sim.Deliver(fmt.Sprintf("+1555800%04d", i), "hello"); err != nil {
				delivered <- err
				return
			}
		}
	}()
	bridged := `bubbled_messages_total{direction="in",result="bridged",route="sms"}`
	// A loaded 2-core machine made about one portal per 4 s one at a time;
	// the line now hands 8 senders at once.
	start := time.Now()
	deadline := start.Add(time.Duration(n)*10*time.Second + 2*time.Minute)
	for last := start; benchScrape(b, f, bridged) < float64(n+1); {
		select {
		case err := <-delivered:
			b.Fatalf("deliver to modemsim: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %v of %d SMS bridged; log:\n%s", benchScrape(b, f, bridged), n+1, f.tail())
		}
		if time.Since(last) > time.Minute { // a long run says how far it got
			last = time.Now()
			fmt.Fprintf(os.Stderr, "portal memory: %v of %d SMS bridged after %s\n", benchScrape(b, f, bridged), n+1, time.Since(start).Round(time.Second))
		}
		time.Sleep(time.Second)
	}
	b.ReportMetric(time.Since(start).Seconds()/float64(n), "s/portal")
	rss1, heap1 := benchMemory(b, f)
	mb := func(v float64) float64 { return v / (1 << 20) }
	b.ReportMetric(mb(rss0), "MB-rss-idle")
	b.ReportMetric(mb(rss1), "MB-rss-portals")
	b.ReportMetric((rss1-rss0)/1024/float64(n), "KB-rss/portal")
	b.ReportMetric((heap1-heap0)/1024/float64(n), "KB-heap/portal")
	b.ReportMetric(float64(n), "portals")
}

// benchMemory forces a GC in bubbled (heap profile with gc=1), lets the
// runtime return freed memory for a few seconds, and returns its VmRSS and
// Go heap in use, in bytes.
func benchMemory(b *testing.B, e *env) (rss, heap float64) {
	b.Helper()
	for range 2 {
		resp, err := http.Get(e.metricsURL + "/debug/pprof/heap?gc=1")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		time.Sleep(5 * time.Second)
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.proc.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(raw)
	if m == nil {
		b.Fatalf("no VmRSS in /proc status")
	}
	kb, _ := strconv.ParseFloat(string(m[1]), 64)
	return kb * 1024, benchScrape(b, e, "go_memstats_heap_inuse_bytes")
}

// benchScrape returns one sample of bubbled's /metrics, -1 when absent.
func benchScrape(b *testing.B, e *env, series string) float64 {
	b.Helper()
	resp, err := http.Get(e.metricsURL + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, _ := strconv.ParseFloat(rest, 64)
			return v
		}
	}
	return -1
}
