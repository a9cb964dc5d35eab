package aslistener

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// BenchmarkTransactionBurst plays a homeserver pushing a burst of 500
// transactions (one message each, one after the other, as homeservers do)
// over real HTTP to the listener with the SQLite journal, while the worker
// takes 5 ms per event (a busy bridge). It reports the answer latencies:
// the target is p99 < 100 ms, whatever the worker is doing.
func BenchmarkTransactionBurst(b *testing.B) {
	const burst = 500
	j := newJournal(b, openDB(b, filepath.Join(b.TempDir(), "j.db")), Options{Log: zap.NewNop()})
	lim := Limits{MaxBodyBytes: 16 << 20, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 1 << 16}
	srv, err := Listen("tcp", "127.0.0.1:0", Handler(token, lim.MaxBodyBytes, j, nil, zap.NewNop()), lim, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = srv.Close(context.Background()) }()
	j.Start(context.Background(), func(context.Context, Entry) { time.Sleep(5 * time.Millisecond) })
	defer func() { _ = j.Stop(context.Background()) }()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	base := fmt.Sprintf("http://%s/_matrix/app/v1/transactions/", srv.Addr())
	lat := make([]time.Duration, 0, burst*b.N)
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for i := 0; i < burst; i++ {
			body := txnBodyOf(msg(fmt.Sprintf("$%d-%d", n, i), "@alice:x", fmt.Sprintf("burst message %d", i)))
			req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s%d-%d", base, n, i), strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+token)
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_ = resp.Body.Close()
			lat = append(lat, time.Since(start))
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("HTTP %d", resp.StatusCode)
			}
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	if p99 := lat[len(lat)*99/100]; p99 >= 100*time.Millisecond {
		b.Errorf("p99 answer time %s, want < 100ms", p99)
	}
}
