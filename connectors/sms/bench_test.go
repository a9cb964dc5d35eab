package sms

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// BenchmarkOutbox measures the daemon's cost per outbound SMS part from
// Enqueue to the PDU accepted by a zero-latency simulator (CPU time per
// part is reported by -benchtime with the process CPU metric below), and,
// with a simulated network latency, the share of time the modem is busy
// while the queue is not empty, seen from the simulator: the time from each
// AT+CMGS to its answer against the whole span of the burst.
func BenchmarkOutbox(b *testing.B) {
	for _, latency := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run(fmt.Sprintf("latency=%s", latency), func(b *testing.B) {
			o := newOutLine(b, modemsim.Options{}, Config{}, true)
			o.sim.SetDelay("+CMGS", latency)
			ctx := context.Background()
			n := b.N
			if latency > 0 {
				n = min(b.N, 200)
			}
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < n; i++ {
				if err := o.line.Enqueue(ctx, OutMessage{ID: fmt.Sprint("$b", i), To: bob, Text: fmt.Sprint("benchmark ", i)}); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := o.sim.WaitSent(ctx, n); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			cpu := cpuTime() - cpu0
			log := o.sim.SendLog()
			var busy time.Duration
			for _, r := range log {
				busy += r.Answered.Sub(r.Prompted)
			}
			span := log[len(log)-1].Answered.Sub(log[0].Prompted)
			b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/part")
			b.ReportMetric(100*float64(busy)/float64(span), "%modem-busy")
		})
	}
}

// BenchmarkOutboxCapsOn is BenchmarkOutbox (no latency) with every cap on,
// as the default config has them (limits high enough never to hold): the
// cost of counting the day's, month's and the person's parts per part.
func BenchmarkOutboxCapsOn(b *testing.B) {
	cfg := Config{RatePerMinute: 1 << 30, RatePerDay: 1 << 30, RatePerMonth: 1 << 30, UserRatePerDay: 1 << 30,
		UserLines: func() []string { return []string{"line2"} }}
	o := newOutLine(b, modemsim.Options{}, cfg, true)
	ctx := context.Background()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := o.line.Enqueue(ctx, OutMessage{ID: fmt.Sprint("$b", i), To: bob, Text: fmt.Sprint("benchmark ", i)}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := o.sim.WaitSent(ctx, b.N); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/part")
}
