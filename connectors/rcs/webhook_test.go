package rcs

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/bubbled/bubbled/connectors/rcs/maapfake"
	"github.com/bubbled/bubbled/connectors/rcs/rbmfake"
	"github.com/bubbled/bubbled/fallback"
)

// webhookEnv is a handler on a test server with both fakes pointed at it.
type webhookEnv struct {
	rbm     *rbmfake.Server
	maap    *maapfake.Server
	db      *dbutil.Database
	store   *DBEventStore
	h       *WebhookHandler
	srv     *httptest.Server
	clock   *fakeClock
	logs    *observer.ObservedLogs
	events  chan Event
	mu      sync.Mutex
	failing func(ev Event) error // consumer failure script; nil = accept
	rejects []string             // what OnReject was told, "provider status"; guarded by mu
}

// rejected returns what OnReject was told so far.
func (e *webhookEnv) rejected() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.rejects)
}

type envOptions struct {
	maap  maapfake.Options
	mcfg  func(m *MaaPWebhook)
	db    *dbutil.Database
	start bool
	retry RetryPolicy
}

func newWebhookEnv(t *testing.T, o envOptions) *webhookEnv {
	t.Helper()
	e := &webhookEnv{
		rbm:    startRBMFake(t, rbmfake.Options{}),
		maap:   startMaaPFake(t, o.maap),
		clock:  newFakeClock(),
		events: make(chan Event, 100),
		db:     o.db,
	}
	if e.db == nil {
		e.db = testDB(t)
	}
	e.store = NewDBEventStore(e.db)
	var log *zap.Logger
	log, e.logs = observedLogger(t)
	mcfg := &MaaPWebhook{BotID: e.maap.BotID(), Secret: e.maap.WebhookSecret()}
	if o.mcfg != nil {
		o.mcfg(mcfg)
	}
	h, err := NewWebhookHandler(WebhookConfig{
		RBM:   &RBMWebhook{AgentID: e.rbm.AgentID(), ClientToken: e.rbm.ClientToken()},
		MaaP:  mcfg,
		Store: e.store,
		Consumer: func(ctx context.Context, ev Event) error {
			e.mu.Lock()
			f := e.failing
			e.mu.Unlock()
			if f != nil {
				if err := f(ev); err != nil {
					return err
				}
			}
			e.events <- ev
			return nil
		},
		Logger: log,
		Clock:  e.clock,
		Retry:  o.retry,
		OnReject: func(provider string, status int) {
			e.mu.Lock()
			e.rejects = append(e.rejects, fmt.Sprintf("%s %d", provider, status))
			e.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatalf("NewWebhookHandler: %v", err)
	}
	e.h = h
	mux := http.NewServeMux()
	mux.Handle("/rcs/", h)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	if o.start {
		if err := h.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.Stop)
	}
	return e
}

func (e *webhookEnv) rbmURL() string  { return e.srv.URL + "/rcs/rbm" }
func (e *webhookEnv) maapURL() string { return e.srv.URL + "/rcs/maap" }

// next waits for the consumer's next event.
func (e *webhookEnv) next(t *testing.T) Event {
	t.Helper()
	select {
	case ev := <-e.events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event reached the consumer")
		return nil
	}
}

// expectStatus fails unless res has status want.
func expectStatus(t *testing.T, what string, status int, err error, want int) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if status != want {
		t.Fatalf("%s: status %d, want %d", what, status, want)
	}
}

func TestWebhookRBMEvents(t *testing.T) {
	e := newWebhookEnv(t, envOptions{start: true})
	ctx := context.Background()
	agentMsg := MessageID("$out:example.org", 0)
	fileURL := e.rbm.HostFile([]byte("jpegdata"), "image/jpeg")

	type push struct {
		data []byte
		id   string
	}
	var pushes []push
	add := func(b []byte, id string) { pushes = append(pushes, push{b, id}) }
	add(e.rbm.UserMessage(alice, "hello agent"))
	add(e.rbm.UserFile(alice, fileURL, "cat.jpg", "image/jpeg", 8))
	add(e.rbm.UserEvent(alice, "DELIVERED", agentMsg))
	add(e.rbm.UserEvent(alice, "READ", agentMsg))
	add(e.rbm.UserEvent(alice, "IS_TYPING", ""))
	add(e.rbm.UserEvent(alice, "UNSUBSCRIBE", ""))
	add(e.rbm.UserEvent(alice, "SUBSCRIBE", ""))
	for i, p := range pushes {
		res, err := e.rbm.Push(ctx, e.rbmURL(), p.data, rbmfake.Signed)
		expectStatus(t, fmt.Sprintf("push %d", i), res.Status, err, 200)
	}
	check := func(ev Event, wantKey string) *EventMeta {
		t.Helper()
		m := ev.Meta()
		if m.Provider != "rbm" || m.Sender != alice || m.Key != wantKey || m.Time.IsZero() {
			t.Fatalf("event %T meta = %+v, want sender %s key %s", ev, m, alice, wantKey)
		}
		return m
	}
	// In order of arrival, one each.
	if ev, ok := e.next(t).(*MessageEvent); !ok || ev.Text != "hello agent" || ev.MessageID != pushes[0].id {
		t.Fatalf("first event = %#v", ev)
	} else {
		check(ev, "message:"+pushes[0].id)
	}
	if ev, ok := e.next(t).(*MessageEvent); !ok || ev.File == nil || ev.File.URL != fileURL || ev.File.MIMEType != "image/jpeg" || ev.File.Size != 8 {
		t.Fatalf("file event = %#v", ev)
	}
	if ev, ok := e.next(t).(*DeliveredEvent); !ok || ev.MessageID != agentMsg {
		t.Fatalf("delivered event = %#v", ev)
	} else {
		check(ev, "event:"+pushes[2].id)
	}
	if ev, ok := e.next(t).(*ReadEvent); !ok || ev.MessageID != agentMsg {
		t.Fatalf("read event = %#v", ev)
	}
	if ev, ok := e.next(t).(*TypingEvent); !ok || !ev.Active {
		t.Fatalf("typing event = %#v", ev)
	}
	if ev, ok := e.next(t).(*UnsubscribeEvent); !ok {
		t.Fatalf("unsubscribe event = %#v", ev)
	} else {
		check(ev, "event:"+pushes[5].id)
	}
	if ev, ok := e.next(t).(*SubscribeEvent); !ok {
		t.Fatalf("subscribe event = %#v", ev)
	}
}

func TestWebhookRBMSignature(t *testing.T) {
	cases := []struct {
		name   string
		sign   rbmfake.Signing
		status int
	}{
		{name: "tampered body", sign: rbmfake.Tampered, status: 401},
		{name: "wrong key", sign: rbmfake.WrongKey, status: 401},
		{name: "missing signature", sign: rbmfake.Unsigned, status: 401},
		{name: "good signature", sign: rbmfake.Signed, status: 200},
	}
	e := newWebhookEnv(t, envOptions{start: true})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data, _ := e.rbm.UserMessage(alice, tc.name)
			res, err := e.rbm.Push(context.Background(), e.rbmURL(), data, tc.sign)
			expectStatus(t, "push", res.Status, err, tc.status)
		})
	}
	// Only the good one is handed over.
	if ev, ok := e.next(t).(*MessageEvent); !ok || ev.Text != "good signature" {
		t.Fatalf("event = %#v", ev)
	}
	if n := e.logs.FilterMessageSnippet("bad X-Goog-Signature").Len(); n != 2 {
		t.Errorf("logged %d bad-signature lines, want 2", n)
	}
	if n := e.logs.FilterMessageSnippet("without X-Goog-Signature").Len(); n != 1 {
		t.Errorf("logged %d missing-signature lines, want 1", n)
	}
	if got := e.rejected(); len(got) != 3 || got[0] != "rbm 401" {
		t.Errorf("OnReject saw %v; want the 3 refused pushes as rbm 401", got)
	}
}

func TestWebhookReplayHandledOnce(t *testing.T) {
	e := newWebhookEnv(t, envOptions{start: true})
	ctx := context.Background()
	data, id := e.rbm.UserMessage(alice, "once")
	for i := range 3 {
		// Each push is a new Pub/Sub envelope around the same signed data,
		// as a redelivery or a replay attack would be.
		res, err := e.rbm.Push(ctx, e.rbmURL(), data, rbmfake.Signed)
		expectStatus(t, fmt.Sprintf("push %d", i), res.Status, err, 200)
	}
	mdata, mid := e.maap.UserMessage(bob, "once too")
	for i := range 2 {
		res, err := e.maap.Push(ctx, e.maapURL(), mdata, maapfake.Signed)
		expectStatus(t, fmt.Sprintf("MaaP push %d", i), res.Status, err, 200)
	}
	marker, markerID := e.rbm.UserMessage(alice, "after")
	res, err := e.rbm.Push(ctx, e.rbmURL(), marker, rbmfake.Signed)
	expectStatus(t, "marker push", res.Status, err, 200)

	for _, want := range []string{id, mid, markerID} {
		if ev := e.next(t); ev.Meta().MessageID != want {
			t.Fatalf("event %#v, want message %s", ev, want)
		}
	}
	select {
	case ev := <-e.events:
		t.Fatalf("replayed event handed over again: %#v", ev)
	default:
	}
}

func TestWebhookMalformed(t *testing.T) {
	e := newWebhookEnv(t, envOptions{start: true})
	ctx := context.Background()
	badData := []byte(`{"senderPhoneNumber":"+15551230001","messageId":"x","text":"unterminated}`)
	noSender := []byte(`{"messageId":"m1","text":"hi"}`)
	cases := []struct {
		name   string
		send   func() (int, error)
		status int
		log    string
	}{
		{name: "RBM data not JSON (signed)", status: 400, log: "malformed JSON", send: func() (int, error) {
			r, err := e.rbm.Push(ctx, e.rbmURL(), badData, rbmfake.Signed)
			return r.Status, err
		}},
		{name: "RBM sender missing (signed)", status: 400, log: "malformed JSON", send: func() (int, error) {
			r, err := e.rbm.Push(ctx, e.rbmURL(), noSender, rbmfake.Signed)
			return r.Status, err
		}},
		{name: "RBM envelope not JSON", status: 400, log: "malformed JSON envelope", send: func() (int, error) {
			r, err := e.rbm.PushRaw(ctx, e.rbmURL(), []byte(`{"message":`), "c2ln")
			return r.Status, err
		}},
		{name: "RBM data not base64", status: 400, log: "not base64", send: func() (int, error) {
			r, err := e.rbm.PushRaw(ctx, e.rbmURL(), []byte(`{"message":{"data":"!!!"}}`), "c2ln")
			return r.Status, err
		}},
		{name: "MaaP body not JSON (signed)", status: 400, log: "malformed JSON", send: func() (int, error) {
			r, err := e.maap.Push(ctx, e.maapURL(), []byte(`{"event":"message",`), maapfake.Signed)
			return r.Status, err
		}},
		{name: "MaaP contact not E.164 (signed)", status: 400, log: "malformed JSON", send: func() (int, error) {
			r, err := e.maap.Push(ctx, e.maapURL(), []byte(`{"event":"message","RCSMessage":{"msgId":"a","textMessage":"x"},"messageContact":{"userContact":"abc"}}`), maapfake.Signed)
			return r.Status, err
		}},
		{name: "MaaP unknown event ignored", status: 200, send: func() (int, error) {
			r, err := e.maap.Push(ctx, e.maapURL(), []byte(`{"event":"newUser","messageContact":{"userContact":"+15551230001"}}`), maapfake.Signed)
			return r.Status, err
		}},
		{name: "RBM capability callback ignored", status: 200, send: func() (int, error) {
			r, err := e.rbm.Push(ctx, e.rbmURL(), []byte(`{"agentId":"bubbled_test_agent","requestId":"r"}`), rbmfake.Signed)
			return r.Status, err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.logs.Len()
			st, err := tc.send()
			expectStatus(t, "push", st, err, tc.status)
			if tc.log != "" {
				found := false
				for _, l := range e.logs.All()[before:] {
					if strings.Contains(l.Message, tc.log) || strings.Contains(fmt.Sprint(l.ContextMap()["error"]), tc.log) {
						found = l.Level >= zap.WarnLevel
					}
				}
				if !found {
					t.Errorf("no warning mentioning %q", tc.log)
				}
			}
		})
	}
	// Nothing from the bad requests reached the consumer or the store.
	marker, markerID := e.rbm.UserMessage(alice, "marker")
	res, err := e.rbm.Push(ctx, e.rbmURL(), marker, rbmfake.Signed)
	expectStatus(t, "marker", res.Status, err, 200)
	if ev := e.next(t); ev.Meta().MessageID != markerID {
		t.Fatalf("first event after malformed ones = %#v", ev)
	}
	var n int
	if err := e.db.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_rcs_event`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("stored %d events (%v), want 1", n, err)
	}
}

func TestWebhookHandshake(t *testing.T) {
	e := newWebhookEnv(t, envOptions{start: true})
	cases := []struct {
		name   string
		token  string
		status int
		body   string
	}{
		{name: "right client token echoes the secret", token: e.rbm.ClientToken(), status: 200, body: "8237498237"},
		{name: "wrong client token", token: "guess", status: 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.rbm.Handshake(context.Background(), e.rbmURL(), tc.token, "8237498237")
			expectStatus(t, "handshake", res.Status, err, tc.status)
			if tc.body != "" && res.Body != tc.body {
				t.Fatalf("body %q, want %q", res.Body, tc.body)
			}
		})
	}
}

func TestWebhookRouting(t *testing.T) {
	e := newWebhookEnv(t, envOptions{start: true})
	ctx := context.Background()
	otherAgent := []byte(`{"senderPhoneNumber":"+15551230001","messageId":"m9","agentId":"other_agent","text":"hi"}`)
	cases := []struct {
		name   string
		send   func() (int, error)
		status int
	}{
		{name: "payload for another agent", status: 403, send: func() (int, error) {
			r, err := e.rbm.Push(ctx, e.rbmURL(), otherAgent, rbmfake.Signed)
			return r.Status, err
		}},
		{name: "path with another agent", status: 404, send: func() (int, error) {
			data, _ := e.rbm.UserMessage(alice, "x")
			r, err := e.rbm.Push(ctx, e.rbmURL()+"/other_agent", data, rbmfake.Signed)
			return r.Status, err
		}},
		{name: "path with our agent", status: 200, send: func() (int, error) {
			data, _ := e.rbm.UserMessage(alice, "via agent path")
			r, err := e.rbm.Push(ctx, e.rbmURL()+"/"+e.rbm.AgentID(), data, rbmfake.Signed)
			return r.Status, err
		}},
		{name: "unknown provider", status: 404, send: func() (int, error) {
			r, err := e.rbm.PushRaw(ctx, e.srv.URL+"/rcs/sinch", []byte(`{}`), "")
			return r.Status, err
		}},
		{name: "GET", status: 405, send: func() (int, error) {
			r, err := http.Get(e.rbmURL())
			if err != nil {
				return 0, err
			}
			r.Body.Close()
			return r.StatusCode, nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, err := tc.send()
			expectStatus(t, "request", st, err, tc.status)
		})
	}
	if ev, ok := e.next(t).(*MessageEvent); !ok || ev.Text != "via agent path" {
		t.Fatalf("event = %#v", ev)
	}
}

func TestWebhookProviderNotConfigured(t *testing.T) {
	h, err := NewWebhookHandler(WebhookConfig{
		RBM:      &RBMWebhook{AgentID: "a", ClientToken: "t"},
		Store:    newMemStore(),
		Consumer: func(context.Context, Event) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/rcs/maap", strings.NewReader(`{}`)))
	if rec.Code != 404 {
		t.Fatalf("status %d, want 404", rec.Code)
	}
}

func TestWebhookMaaPEvents(t *testing.T) {
	cases := []struct {
		name string
		opts maapfake.Options
		mcfg func(m *MaaPWebhook)
	}{
		{name: "hmac hex"},
		{name: "hmac base64 custom header", opts: maapfake.Options{SignatureBase64: true, SignatureHeader: "X-Bot-Signature"},
			mcfg: func(m *MaaPWebhook) { m.SignatureHeader = "X-Bot-Signature" }},
		{name: "bearer", opts: maapfake.Options{WebhookAuth: "bearer"}, mcfg: func(m *MaaPWebhook) { m.Auth = MaaPAuthBearer }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newWebhookEnv(t, envOptions{start: true, maap: tc.opts, mcfg: tc.mcfg})
			ctx := context.Background()
			for _, sign := range []maapfake.Signing{maapfake.Tampered, maapfake.WrongKey, maapfake.Unsigned} {
				b, _ := e.maap.UserMessage(bob, "forged")
				res, err := e.maap.Push(ctx, e.maapURL(), b, sign)
				expectStatus(t, fmt.Sprintf("forged push %d", sign), res.Status, err, 401)
			}
			out := MessageID("$out", 0)
			text, textID := e.maap.UserMessage(bob, "hello bot")
			file, _ := e.maap.UserFile(bob, "https://maap.example/f/1", "a.pdf", "application/pdf", 42)
			bodies := [][]byte{
				text, file,
				e.maap.StatusEvent(bob, out, "sent"), // ignored
				e.maap.StatusEvent(bob, out, "delivered"),
				e.maap.StatusEvent(bob, out, "displayed"),
				e.maap.StatusEvent(bob, out, "failed"),
				e.maap.TypingEvent(bob, true),
				e.maap.TypingEvent(bob, false),
			}
			for i, b := range bodies {
				res, err := e.maap.Push(ctx, e.maapURL(), b, maapfake.Signed)
				expectStatus(t, fmt.Sprintf("push %d", i), res.Status, err, 200)
			}
			if ev, ok := e.next(t).(*MessageEvent); !ok || ev.Text != "hello bot" || ev.MessageID != textID || ev.Sender != bob || ev.Provider != "maap" {
				t.Fatalf("text event = %#v", ev)
			}
			if ev, ok := e.next(t).(*MessageEvent); !ok || ev.File == nil || ev.File.Name != "a.pdf" || ev.File.Size != 42 {
				t.Fatalf("file event = %#v", ev)
			}
			if ev, ok := e.next(t).(*DeliveredEvent); !ok || ev.MessageID != out {
				t.Fatalf("delivered event = %#v", ev)
			}
			if ev, ok := e.next(t).(*ReadEvent); !ok || ev.MessageID != out {
				t.Fatalf("read event = %#v", ev)
			}
			if ev, ok := e.next(t).(*FailedEvent); !ok || ev.MessageID != out {
				t.Fatalf("failed event = %#v", ev)
			}
			if ev, ok := e.next(t).(*TypingEvent); !ok || !ev.Active {
				t.Fatalf("typing event = %#v", ev)
			}
			if ev, ok := e.next(t).(*TypingEvent); !ok || ev.Active {
				t.Fatalf("idle event = %#v", ev)
			}
		})
	}
}

// TestWebhookRestart: events stored while no worker runs (or before a
// crash) are handed over after Start, once.
func TestWebhookRestart(t *testing.T) {
	db := testDB(t)
	e := newWebhookEnv(t, envOptions{db: db})
	ctx := context.Background()
	var ids []string
	for i := range 3 {
		id, res, err := e.rbm.PushUserMessage(ctx, e.rbmURL(), alice, fmt.Sprintf("offline %d", i))
		expectStatus(t, "push", res.Status, err, 200)
		ids = append(ids, id)
	}
	select {
	case ev := <-e.events:
		t.Fatalf("handed over before Start: %#v", ev)
	default:
	}
	if err := e.h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if ev := e.next(t); ev.Meta().MessageID != id {
			t.Fatalf("event %#v, want %s", ev, id)
		}
	}
	e.h.Stop()
	e.h.Stop() // idempotent

	// A second process on the same database finds nothing to redo.
	e2 := newWebhookEnv(t, envOptions{db: db, start: true})
	id, res, err := e2.rbm.PushUserMessage(ctx, e2.rbmURL(), alice, "fresh")
	expectStatus(t, "push", res.Status, err, 200)
	if ev := e2.next(t); ev.Meta().MessageID != id {
		t.Fatalf("after restart got %#v, want only the fresh message", ev)
	}
}

func TestWebhookConsumerRetry(t *testing.T) {
	e := newWebhookEnv(t, envOptions{start: true, retry: RetryPolicy{Policy: fallback.RetryPolicy{Attempts: 3}, Random: halfJitter}})
	ctx := context.Background()
	var mu sync.Mutex
	calls := map[string]int{}
	e.mu.Lock()
	e.failing = func(ev Event) error {
		mu.Lock()
		defer mu.Unlock()
		m := ev.(*MessageEvent)
		calls[m.Text]++
		switch {
		case m.Text == "flaky" && calls[m.Text] <= 2:
			return errors.New("homeserver unavailable")
		case m.Text == "poison":
			return errors.New("cannot handle this")
		}
		return nil
	}
	e.mu.Unlock()
	for _, text := range []string{"flaky", "poison", "fine"} {
		_, res, err := e.rbm.PushUserMessage(ctx, e.rbmURL(), alice, text)
		expectStatus(t, "push", res.Status, err, 200)
	}
	for _, want := range []string{"flaky", "fine"} {
		if ev := e.next(t).(*MessageEvent); ev.Text != want {
			t.Fatalf("event %q, want %q", ev.Text, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if calls["flaky"] != 3 || calls["poison"] != 3 || calls["fine"] != 1 {
		t.Fatalf("consumer calls = %v", calls)
	}
	// Initial 1s with half jitter: 750ms after the first failure, 1.5s after
	// the second; flaky and poison both fail twice before resolving.
	want := []time.Duration{750 * time.Millisecond, 1500 * time.Millisecond, 750 * time.Millisecond, 1500 * time.Millisecond}
	if got := e.clock.Sleeps(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("worker waits = %v, want %v", got, want)
	}
	var failure string
	if err := e.db.QueryRow(ctx, `SELECT failure FROM bubbled_rcs_event WHERE failure <> ''`).Scan(&failure); err != nil || !strings.Contains(failure, "cannot handle this") {
		t.Fatalf("poison event failure = %q (%v)", failure, err)
	}
	if e.logs.FilterMessageSnippet("gave up handing over RCS event").Len() != 1 {
		t.Error("no log line about giving up")
	}
}

func TestWebhookStartStop(t *testing.T) {
	e := newWebhookEnv(t, envOptions{})
	ctx := context.Background()
	if err := e.h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.h.Start(ctx); err == nil {
		t.Fatal("second Start succeeded")
	}
	e.h.Stop()
	if err := e.h.Start(ctx); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	e.h.Stop()
}

func TestNewWebhookHandlerErrors(t *testing.T) {
	store := newMemStore()
	consumer := func(context.Context, Event) error { return nil }
	cases := []struct {
		name string
		cfg  WebhookConfig
		want string
	}{
		{name: "no store", cfg: WebhookConfig{Consumer: consumer, RBM: &RBMWebhook{AgentID: "a", ClientToken: "t"}}, want: "event store"},
		{name: "no provider", cfg: WebhookConfig{Store: store, Consumer: consumer}, want: "rcs.rbm or rcs.maap"},
		{name: "RBM without token", cfg: WebhookConfig{Store: store, Consumer: consumer, RBM: &RBMWebhook{AgentID: "a"}}, want: "webhook_client_token"},
		{name: "MaaP without secret", cfg: WebhookConfig{Store: store, Consumer: consumer, MaaP: &MaaPWebhook{BotID: "b"}}, want: "webhook_secret"},
		{name: "MaaP unknown auth", cfg: WebhookConfig{Store: store, Consumer: consumer, MaaP: &MaaPWebhook{BotID: "b", Secret: "s", Auth: "basic"}}, want: "webhook_auth"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewWebhookHandler(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestVerifySignatures(t *testing.T) {
	data := []byte(`{"text":"hi"}`)
	good := rbmfake.Sign("tok", data)
	cases := []struct {
		name string
		ok   bool
		got  bool
	}{
		{name: "RBM good", ok: true, got: VerifyRBMSignature("tok", data, good)},
		{name: "RBM url-safe encoding", ok: true, got: VerifyRBMSignature("tok", data, base64URL(good))},
		{name: "RBM other key", got: VerifyRBMSignature("tok2", data, good)},
		{name: "RBM other data", got: VerifyRBMSignature("tok", []byte(`{"text":"ho"}`), good)},
		{name: "RBM truncated", got: VerifyRBMSignature("tok", data, good[:20])},
		{name: "RBM garbage", got: VerifyRBMSignature("tok", data, "%%%")},
		{name: "MaaP hex", ok: true, got: VerifyMaaPSignature("s", data, maapfake.Sign("s", data, false))},
		{name: "MaaP prefixed", ok: true, got: VerifyMaaPSignature("s", data, "sha256="+maapfake.Sign("s", data, false))},
		{name: "MaaP base64", ok: true, got: VerifyMaaPSignature("s", data, maapfake.Sign("s", data, true))},
		{name: "MaaP other key", got: VerifyMaaPSignature("t", data, maapfake.Sign("s", data, false))},
		{name: "MaaP empty secret", got: VerifyMaaPSignature("", data, maapfake.Sign("", data, false))},
		{name: "MaaP empty header", got: VerifyMaaPSignature("s", data, "")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.ok {
				t.Fatalf("verified = %v, want %v", tc.got, tc.ok)
			}
		})
	}
}

func base64URL(std string) string {
	b, _ := base64.StdEncoding.DecodeString(std)
	return base64.RawURLEncoding.EncodeToString(b)
}
