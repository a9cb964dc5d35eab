package api

import (
	"bytes"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
)

// BenchmarkIntake measures the API's cost of taking one message: a POST
// over loopback HTTP from 8 parallel clients, authenticated, checked and
// stored in SQLite (the routing and mirror workers are not running).
//
//	go test -tags goolm -run '^$' -bench Intake ./connectors/api/
func BenchmarkIntake(b *testing.B) {
	h := newBenchHarness(b)
	var n atomic.Int64
	b.SetParallelism(4) // 8 clients on 2 CPUs
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := fmt.Sprintf(`{"to":"%s","text":"bench %d"}`, bob, n.Add(1))
			req, _ := http.NewRequest(http.MethodPost, h.http.URL+"/api/v1/messages", bytes.NewBufferString(body))
			req.Header.Set("Authorization", "Bearer "+secretB)
			resp, err := h.http.Client().Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("POST = %s", resp.Status)
				return
			}
		}
	})
}
