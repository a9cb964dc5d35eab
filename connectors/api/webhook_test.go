package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/bubbled/bubbled/fallback"
)

// hookReceiver is a webhook receiver on 127.0.0.1 that verifies every
// request as the README tells receivers to.
type hookReceiver struct {
	srv    *httptest.Server
	secret string
	mu     sync.Mutex
	fail   int // answer 500 to this many requests first
	got    []Received
	bad    []string
	tries  map[string]int
}

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	h := &hookReceiver{secret: secret, tries: map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.tries[r.Header.Get(DeliveryHeader)]++
		if err := VerifySignature(h.secret, r.Header.Get(SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			h.bad = append(h.bad, err.Error())
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if h.fail > 0 {
			h.fail--
			http.Error(w, "busy", http.StatusInternalServerError)
			return
		}
		var rc Received
		_ = json.Unmarshal(body, &rc)
		if r.Header.Get(EventHeader) != "sms.received" || rc.Event != "sms.received" {
			h.bad = append(h.bad, "wrong event")
		}
		h.got = append(h.got, rc)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) wait(t *testing.T, n int) []Received {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		h.mu.Lock()
		got := append([]Received(nil), h.got...)
		h.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receiver got %d webhooks, want %d", len(got), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newTestHooks(t *testing.T, path string, hooks []Webhook) *Webhooks {
	w := NewWebhooks(WebhookConfig{Hooks: hooks, DB: openDB(t, path), Log: zaptest.NewLogger(t),
		Retry: fallback.RetryPolicy{Initial: 20 * time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 2}})
	return w
}

func TestWebhooksSignRetryAndResume(t *testing.T) {
	const secret = "hook-secret-0123456789abcdef0123456789"
	recv := newHookReceiver(t, secret)
	other := newHookReceiver(t, "other-secret-0123456789abcdef012345")
	recv.fail = 2
	path := filepath.Join(t.TempDir(), "bubbled.db")
	hooks := []Webhook{{URL: recv.srv.URL, Secret: secret, Lines: []string{line1}}, {URL: other.srv.URL, Secret: other.secret, Lines: []string{line2}}}
	w := newTestHooks(t, path, hooks)
	ctx := context.Background()
	sms := Received{ID: "sms-1", Line: line1, From: bob, Text: "garage door open", Parts: 1, Sent: time.Now(), Received: time.Now()}
	// Stored before the worker runs: a restart in between loses nothing.
	if err := w.Received(ctx, sms); err != nil {
		t.Fatal(err)
	}
	if err := w.Received(ctx, sms); err != nil { // handed over again by the line
		t.Fatal(err)
	}
	w2 := newTestHooks(t, path, hooks)
	w2.Start(ctx)
	defer w2.Stop()
	got := recv.wait(t, 1)
	if got[0].ID != "sms-1" || got[0].From != bob || got[0].Text != "garage door open" || got[0].Line != line1 {
		t.Errorf("receiver got %+v", got[0])
	}
	if err := w2.Received(ctx, Received{ID: "sms-2", Line: line2, From: carol, Text: "for the other line"}); err != nil {
		t.Fatal(err)
	}
	other.wait(t, 1)
	time.Sleep(200 * time.Millisecond)
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if len(recv.got) != 1 || recv.tries["sms-1"] != 3 || len(recv.bad) != 0 {
		t.Errorf("receiver: %d webhooks, %d tries of sms-1, bad %v; want one webhook after 2 refusals, all signed", len(recv.got), recv.tries["sms-1"], recv.bad)
	}
	if recv.tries["sms-2"] != 0 {
		t.Error("a line's SMS went to another line's webhook")
	}
}

func TestVerifySignature(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"event":"sms.received"}`)
	good := Sign("k", now, body)
	if !strings.HasPrefix(good, "t=1800000000,v1=") {
		t.Fatalf("signature %q", good)
	}
	for _, tc := range []struct {
		name, secret, header, body string
		at                         time.Time
		ok                         bool
	}{
		{"good", "k", good, string(body), now, true},
		{"other secret", "x", good, string(body), now, false},
		{"changed body", "k", good, `{"event":"sms.sent"}`, now, false},
		{"replayed later", "k", good, string(body), now.Add(10 * time.Minute), false},
		{"garbage", "k", "v1=00", string(body), now, false},
	} {
		err := VerifySignature(tc.secret, tc.header, []byte(tc.body), tc.at, 5*time.Minute)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
