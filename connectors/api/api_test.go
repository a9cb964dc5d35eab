package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bubbled/bubbled/fallback"
	"github.com/bubbled/bubbled/fallback/fallbacktest"
)

func TestUnauthenticatedRequestsStoreNothing(t *testing.T) {
	h := newHarness(t, "", nil)
	body := map[string]string{"to": bob, "text": "hi"}
	for _, tc := range []struct {
		name, secret, path string
		header             string
	}{
		{name: "no token", path: "/api/v1/messages"},
		{name: "wrong token", secret: "not-a-token", path: "/api/v1/messages"},
		{name: "prefix of a token", secret: secretA[:10], path: "/api/v1/messages"},
		{name: "alertmanager without token", path: "/api/v1/alertmanager?to=" + bob},
		{name: "unknown path", path: "/api/v1/nothing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, out := h.do(t, http.MethodPost, tc.path, tc.secret, body)
			if code != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") == "" || out["errcode"] != "M_UNKNOWN_TOKEN" {
				t.Errorf("got %d %v %v, want 401 with WWW-Authenticate", code, hdr, out)
			}
		})
	}
	if n := h.rows(t); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
}

func TestSendStatusAndOwnership(t *testing.T) {
	h := newHarness(t, "", nil)
	h.start(t)
	code, hdr, out := h.do(t, http.MethodPost, "/api/v1/messages", secretA, map[string]string{"to": "(555) 765-4321", "text": "disk full"})
	if code != http.StatusAccepted || out["status"] != "queued" {
		t.Fatalf("POST = %d %v, want 202 queued", code, out)
	}
	id, _ := out["id"].(string)
	if hdr.Get("Location") != "/api/v1/messages/"+id {
		t.Errorf("Location %q", hdr.Get("Location"))
	}
	h.sender.waitCounts(t, 1, 1)
	h.sender.mu.Lock()
	got := h.sender.sent[0]
	h.sender.mu.Unlock()
	if got.To != bob || got.Text != "disk full" || got.Line != line1 || got.Route != "auto" || got.Token != "alerts" || got.RouterID() != "api:"+id {
		t.Errorf("sender got %+v", got)
	}

	status := func(secret string) (int, map[string]any) {
		code, _, out := h.do(t, http.MethodGet, "/api/v1/messages/"+id, secret, nil)
		return code, out
	}
	if code, out := status(secretA); code != 200 || out["status"] != "queued" || out["to"] != bob || out["line"] != line1 {
		t.Errorf("status = %d %v, want queued", code, out)
	}
	ctx := context.Background()
	if !h.srv.Outcome(ctx, "api:"+id, StatusSent, "") {
		t.Fatal("Outcome did not take an api: ID")
	}
	h.srv.Outcome(ctx, "api:"+id, StatusDelivered, "")
	h.srv.Outcome(ctx, "api:"+id, StatusSent, "") // late: must not move it back
	if code, out := status(secretA); code != 200 || out["status"] != "delivered" {
		t.Errorf("after the outcomes status = %d %v, want delivered", code, out)
	}
	if h.srv.Outcome(ctx, "$event", StatusSent, "") {
		t.Error("Outcome took a Matrix event ID")
	}
	// A second user's token does not see the message.
	if code, out := status(secretB); code != http.StatusNotFound {
		t.Errorf("another token's GET = %d %v, want 404", code, out)
	}
	if code, _, _ := h.do(t, http.MethodGet, "/api/v1/messages/m_nothing", secretA, nil); code != http.StatusNotFound {
		t.Errorf("unknown ID = %d, want 404", code)
	}
}

func TestBadInput(t *testing.T) {
	h := newHarness(t, "", func(c *Config) {
		c.MaxBody = 1024
		c.CheckText = func(text string) error {
			if len(text) > 500 {
				return errTooLong
			}
			return nil
		}
	})
	for _, tc := range []struct {
		name   string
		secret string
		body   any
		code   int
		want   string
	}{
		{"bad number", secretA, map[string]string{"to": "12ab", "text": "x"}, 422, "to:"},
		{"empty text", secretA, map[string]string{"to": bob, "text": "  "}, 422, "text is empty"},
		{"bad route", secretA, map[string]string{"to": bob, "text": "x", "route": "pigeon"}, 422, "pigeon"},
		{"unknown field", secretA, `{"to":"` + bob + `","text":"x","colour":"red"}`, 400, "colour"},
		{"not JSON", secretA, `to=me`, 400, "not the expected JSON"},
		{"too long for the line", secretA, map[string]string{"to": bob, "text": strings.Repeat("x", 600)}, 422, "12 SMS parts"},
		{"oversized body", secretA, map[string]string{"to": bob, "text": strings.Repeat("x", 2000)}, 413, "larger than 1024"},
		{"recipient not allowed", secretA, map[string]string{"to": "+15551112222", "text": "x"}, 403, "may not text +15551112222"},
		{"line not allowed", secretA, map[string]string{"to": bob, "text": "x", "line": line2}, 403, "may not send from line +15550002222"},
		{"bad line", secretA, map[string]string{"to": bob, "text": "x", "line": "abc"}, 422, "line:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, out := h.do(t, http.MethodPost, "/api/v1/messages", tc.secret, tc.body)
			if code != tc.code || !strings.Contains(fmt.Sprint(out["error"]), tc.want) {
				t.Errorf("got %d %v, want %d with %q", code, out, tc.code, tc.want)
			}
		})
	}
	if n := h.rows(t); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
}

func TestDailyCap(t *testing.T) {
	clock := fallbacktest.NewClock(time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC))
	h := newHarness(t, "", func(c *Config) { c.Clock = clock })
	for i := range 3 {
		if code, _, out := h.do(t, http.MethodPost, "/api/v1/messages", secretA, map[string]string{"to": bob, "text": fmt.Sprint("n", i)}); code != 202 {
			t.Fatalf("message %d: %d %v", i, code, out)
		}
	}
	code, hdr, out := h.do(t, http.MethodPost, "/api/v1/messages", secretA, map[string]string{"to": bob, "text": "one too many"})
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") != "3600" || !strings.Contains(fmt.Sprint(out["error"]), "daily_cap") {
		t.Fatalf("4th message = %d Retry-After %q %v, want 429 after 3600 s", code, hdr.Get("Retry-After"), out)
	}
	// The cap is per token: the other token still sends.
	if code, _, _ := h.do(t, http.MethodPost, "/api/v1/messages", secretB, map[string]string{"to": bob, "text": "x"}); code != 202 {
		t.Errorf("the other token got %d, want 202", code)
	}
	clock.Advance(time.Hour)
	if code, _, _ := h.do(t, http.MethodPost, "/api/v1/messages", secretA, map[string]string{"to": bob, "text": "next day"}); code != 202 {
		t.Errorf("next day = %d, want 202", code)
	}
	if n := h.rows(t); n != 5 {
		t.Errorf("%d messages stored, want 5", n)
	}
}

func TestDailyCapUnderConcurrency(t *testing.T) {
	h := newHarness(t, "", nil)
	var wg sync.WaitGroup
	codes := make(chan int, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, _ := h.do(t, http.MethodPost, "/api/v1/messages", secretA, map[string]string{"to": bob, "text": strconv.Itoa(i)})
			codes <- code
		}()
	}
	wg.Wait()
	close(codes)
	n := map[int]int{}
	for c := range codes {
		n[c]++
	}
	if n[202] != 3 || n[429] != 7 {
		t.Errorf("codes %v, want 3×202 and 7×429", n)
	}
}

func TestIdempotencyKey(t *testing.T) {
	h := newHarness(t, "", nil)
	h.start(t)
	req := map[string]string{"to": bob, "text": "once", "idempotency_key": "k1"}
	code1, _, out1 := h.do(t, http.MethodPost, "/api/v1/messages", secretA, req)
	code2, _, out2 := h.do(t, http.MethodPost, "/api/v1/messages", secretA, req)
	if code1 != 202 || code2 != 200 || out1["id"] != out2["id"] || out2["duplicate"] != true {
		t.Fatalf("retry: %d %v then %d %v, want 202 then 200 with the same ID", code1, out1, code2, out2)
	}
	// The same key of another token is another message.
	code3, _, out3 := h.do(t, http.MethodPost, "/api/v1/messages", secretB, req)
	if code3 != 202 || out3["id"] == out1["id"] {
		t.Errorf("other token with the same key: %d %v", code3, out3)
	}
	h.sender.waitCounts(t, 2, 2)
	time.Sleep(100 * time.Millisecond)
	if s, _ := h.sender.counts(); s != 2 {
		t.Errorf("router got %d messages, want 2", s)
	}
	if n := h.rows(t); n != 2 {
		t.Errorf("%d rows, want 2", n)
	}
}

func TestRestartResumesStoredMessages(t *testing.T) {
	path := t.TempDir() + "/bubbled.db"
	h := newHarness(t, path, nil)
	// Taken, but the process ends before its workers ran.
	code, _, out := h.do(t, http.MethodPost, "/api/v1/messages", secretA, map[string]string{"to": bob, "text": "survives"})
	if code != 202 {
		t.Fatalf("POST = %d %v", code, out)
	}
	if s, m := h.sender.counts(); s+m != 0 {
		t.Fatal("the message was handed over before Start")
	}
	h2 := newHarness(t, path, nil)
	h2.start(t)
	h2.sender.waitCounts(t, 1, 1)
	if got := h2.sender.sent[0]; got.ID != out["id"] || got.Text != "survives" {
		t.Errorf("after the restart the router got %+v", got)
	}
	// A third start hands nothing over again.
	h2.srv.Stop()
	h3 := newHarness(t, path, nil)
	h3.start(t)
	time.Sleep(200 * time.Millisecond)
	if s, m := h3.sender.counts(); s+m != 0 {
		t.Errorf("a later start handed over %d/%d again", s, m)
	}
}

func TestTemporaryErrorsRetryPermanentFail(t *testing.T) {
	h := newHarness(t, "", nil)
	h.sender.errs = []error{fallback.Temporary(errors.New("the line is not logged in")), nil}
	h.start(t)
	_, _, out := h.do(t, http.MethodPost, "/api/v1/messages", secretA, map[string]string{"to": bob, "text": "retried"})
	h.sender.waitCounts(t, 1, 1)
	h.sender.mu.Lock()
	h.sender.errs = []error{fallback.Permanent(errors.New("the network says the number does not exist"))}
	h.sender.route = fallback.RouteMatrix
	h.sender.mu.Unlock()
	_, _, out2 := h.do(t, http.MethodPost, "/api/v1/messages", secretA, map[string]string{"to": carol, "text": "fails"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, st := h.do(t, http.MethodGet, "/api/v1/messages/"+out2["id"].(string), secretA, nil)
		if st["status"] == "failed" {
			if !strings.Contains(fmt.Sprint(st["reason"]), "does not exist") {
				t.Errorf("reason %v", st["reason"])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %v, want failed", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, _, st := h.do(t, http.MethodGet, "/api/v1/messages/"+out["id"].(string), secretA, nil); st["status"] != "queued" || st["took_route"] != "sms" {
		t.Errorf("retried message: %v, want queued by sms (the line reports sent)", st)
	}
}

func TestTokenComparison(t *testing.T) {
	ts := newTokenSet(testTokens())
	for _, tc := range []struct {
		header string
		want   string
	}{
		{"Bearer " + secretA, "alerts"},
		{"bearer " + secretB, "other"},
		{"Bearer " + secretA + "x", ""},
		{"Basic " + secretA, ""},
		{secretA, ""},
		{"Bearer ", ""},
	} {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", tc.header)
		got := ""
		if tok := ts.find(r); tok != nil {
			got = tok.Name
		}
		if got != tc.want {
			t.Errorf("%q -> %q, want %q", tc.header, got, tc.want)
		}
	}
}

// TestOneRecipientInOrder: messages to one recipient, taken in a burst
// (several in one millisecond), reach the router in the order they were
// taken, while the dispatcher hands several recipients at once.
func TestOneRecipientInOrder(t *testing.T) {
	h := newHarness(t, "", nil)
	const n = 30
	recipients := []string{bob, "+15557650000", "+15557650001"}
	for i := range n {
		to := recipients[i%len(recipients)]
		if code, _, out := h.do(t, http.MethodPost, "/api/v1/messages", secretB, map[string]any{"to": to, "text": fmt.Sprint(to, " step ", i)}); code != http.StatusAccepted {
			t.Fatalf("message %d: %d %v", i, code, out)
		}
	}
	h.start(t)
	h.sender.waitCounts(t, n, 0)
	h.sender.mu.Lock()
	defer h.sender.mu.Unlock()
	next := map[string]int{}
	for _, m := range h.sender.sent {
		i := next[m.To]*len(recipients) + slices.Index(recipients, m.To)
		if want := fmt.Sprint(m.To, " step ", i); m.Text != want {
			t.Fatalf("the router got %q, want %q next for %s", m.Text, want, m.To)
		}
		next[m.To]++
	}
}
