package bridge

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestSyncPacer: /sync requests of one filter leave at least the gap
// apart; other filters and other requests are not held by them; a request
// whose context ends while it waits gives up.
func TestSyncPacer(t *testing.T) {
	var mu sync.Mutex
	var syncs []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_matrix/client/v3/sync" && r.URL.Query().Get("filter") == "crypto" {
			mu.Lock()
			syncs = append(syncs, time.Now())
			mu.Unlock()
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	const gap = 100 * time.Millisecond
	pacer := newSyncPacer(http.DefaultTransport, gap)
	cli := &http.Client{Transport: pacer}
	get := func(ctx context.Context, path string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		if err != nil {
			return err
		}
		resp, err := cli.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	ctx := context.Background()
	for range 4 {
		if err := get(ctx, "/_matrix/client/v3/sync?filter=crypto&timeout=0"); err != nil {
			t.Fatal(err)
		}
		if err := get(ctx, "/_matrix/client/v3/rooms/!r:x/state"); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	for i := 1; i < len(syncs); i++ {
		if d := syncs[i].Sub(syncs[i-1]); d < gap-5*time.Millisecond {
			t.Errorf("sync %d left %s after the one before, want at least %s", i, d, gap)
		}
	}
	mu.Unlock()
	pacer.mu.Lock()
	if _, ok := pacer.since["crypto"]; !ok || len(pacer.since) != 1 {
		t.Errorf("paced %v, want only the crypto filter's syncs", pacer.since)
	}
	pacer.mu.Unlock()
	// Another filter's first sync does not wait for crypto's gap.
	pacer.mu.Lock()
	pacer.since["crypto"] = time.Now().Add(time.Hour)
	pacer.mu.Unlock()
	if err := get(ctx, "/_matrix/client/v3/sync?filter=receipts"); err != nil {
		t.Fatal(err)
	}
	// A sync waiting its turn gives up with its context.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := get(short, "/_matrix/client/v3/sync?filter=crypto"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a sync whose context ended while it waited: %v, want the deadline", err)
	}
}
