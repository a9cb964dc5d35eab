package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream" // sqlite3-fk-wal
	"go.uber.org/zap/zaptest"

	"github.com/bubbled/bubbled/fallback"
)

const (
	line1   = "+15550001111"
	line2   = "+15550002222"
	bob     = "+15557654321"
	carol   = "+15557650000"
	secretA = "secret-of-token-a-0123456789abcdef"
	secretB = "secret-of-token-b-0123456789abcdef"
)

func openDB(t testing.TB, path string) *dbutil.Database {
	t.Helper()
	db, err := dbutil.NewWithDialect("file:"+path+"?_txlock=immediate", "sqlite3-fk-wal")
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := Upgrade(context.Background(), db); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	return db
}

// fakeSender records what the API hands to the bridge.
type fakeSender struct {
	mu       sync.Mutex
	sent     []Message
	mirrored []Message
	errs     []error // returned by the next Send calls, in order
	route    fallback.Route
	changed  chan struct{}
}

func newFakeSender() *fakeSender {
	return &fakeSender{route: fallback.RouteSMS, changed: make(chan struct{}, 1)}
}

func (f *fakeSender) Send(ctx context.Context, m *Message) (fallback.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer wake(f.changed)
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		if err != nil {
			return "", err
		}
	}
	f.sent = append(f.sent, *m)
	return f.route, nil
}

func (f *fakeSender) Mirror(ctx context.Context, m *Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mirrored = append(f.mirrored, *m)
	wake(f.changed)
	return nil
}

func (f *fakeSender) counts() (sent, mirrored int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sent), len(f.mirrored)
}

// waitCounts waits until at least sent messages were sent and mirrored
// mirrored.
func (f *fakeSender) waitCounts(t *testing.T, sent, mirrored int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		s, m := f.counts()
		if s >= sent && m >= mirrored {
			return
		}
		select {
		case <-f.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("sent %d mirrored %d, want %d and %d", s, m, sent, mirrored)
		}
	}
}

type harness struct {
	srv    *Server
	http   *httptest.Server
	sender *fakeSender
	store  *Store
	db     *dbutil.Database
}

func testTokens() []Token {
	return []Token{
		{Name: "alerts", Secret: secretA, Lines: []string{line1}, Recipients: []string{bob, "+1555765*"}, DailyCap: 3},
		{Name: "other", Secret: secretB, Lines: []string{line2}, Recipients: []string{"*"}},
	}
}

func newHarness(t *testing.T, dbPath string, mod func(*Config)) *harness {
	t.Helper()
	return newHarnessTB(t, dbPath, mod)
}

// newBenchHarness is newHarness for benchmarks (quiet log).
func newBenchHarness(b *testing.B) *harness {
	return newHarnessTB(b, "", func(c *Config) { c.Log = nil })
}

func newHarnessTB(t testing.TB, dbPath string, mod func(*Config)) *harness {
	t.Helper()
	if dbPath == "" {
		dbPath = filepath.Join(t.TempDir(), "bubbled.db")
	}
	h := &harness{sender: newFakeSender(), db: openDB(t, dbPath)}
	h.store = NewStore(h.db)
	cfg := Config{Tokens: testTokens(), Store: h.store, Sender: h.sender, DefaultRegion: "US",
		Retry: fallback.RetryPolicy{Initial: 20 * time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 2},
		Log:   zaptest.NewLogger(t)}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	h.http = httptest.NewServer(srv)
	t.Cleanup(h.http.Close)
	return h
}

func (h *harness) start(t *testing.T) {
	h.srv.Start(context.Background())
	t.Cleanup(h.srv.Stop)
}

// do sends a request and returns the status, headers and decoded body.
func (h *harness) do(t *testing.T, method, path, secret string, body any) (int, http.Header, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, h.http.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := h.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil && len(raw) > 0 {
		t.Fatalf("%s %s: body %q is not JSON: %v", method, path, raw, err)
	}
	return resp.StatusCode, resp.Header, out
}

func (h *harness) rows(t *testing.T) int {
	t.Helper()
	var n int
	if err := h.db.QueryRow(context.Background(), `SELECT COUNT(*) FROM bubbled_api_message`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

var errTooLong = errors.New("the text needs 12 SMS parts; the line sends at most 10")
