package receiptsync

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// fakeHS answers the client-server API's filter upload and /sync as the
// spec writes them, recording what the client asked.
type fakeHS struct {
	t       *testing.T
	mu      sync.Mutex
	filter  map[string]any
	syncs   []string // "since|filter" of each /sync
	answers []func(w http.ResponseWriter)
}

func (f *fakeHS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer as-token" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/filter"):
		raw, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(raw, &f.filter)
		_, _ = io.WriteString(w, `{"filter_id":"f1"}`)
	case r.Method == http.MethodGet && r.URL.Path == "/_matrix/client/v3/sync":
		f.syncs = append(f.syncs, r.URL.Query().Get("since")+"|"+r.URL.Query().Get("filter"))
		if len(f.answers) == 0 {
			_, _ = io.WriteString(w, `{"next_batch":"idle"}`)
			return
		}
		next := f.answers[0]
		f.answers = f.answers[1:]
		next(w)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func syncBody(next, room, eventID, user string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"next_batch": next,
			"rooms": map[string]any{"join": map[string]any{room: map[string]any{
				"timeline": map[string]any{"events": []any{map[string]any{"type": "m.room.message", "event_id": "$t", "sender": user, "content": map[string]any{"body": "x"}}}},
				"ephemeral": map[string]any{"events": []any{
					map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": []string{user}}},
					map[string]any{"type": "m.receipt", "content": map[string]any{eventID: map[string]any{"m.read": map[string]any{user: map[string]any{"ts": 1700000000000}}}}},
				}},
			}}},
		})
	}
}

// TestSyncHandsReceipts: the sync uploads a receipts-only filter, hands
// each m.receipt with its room (typing and timeline events are not
// handed), follows next_batch, and survives a failing homeserver.
func TestSyncHandsReceipts(t *testing.T) {
	hs := &fakeHS{t: t, answers: []func(http.ResponseWriter){
		syncBody("s1", "!a:hs", "$e1", "@bob:hs"),
		func(w http.ResponseWriter) { w.WriteHeader(http.StatusBadGateway) },
		syncBody("s2", "!b:hs", "$e2", "@carol:hs"),
	}}
	srv := httptest.NewServer(hs)
	defer srv.Close()
	cli, err := mautrix.NewClient(srv.URL, "@bot:hs", "as-token")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *event.Event, 10)
	s := Start(Options{Client: cli, PollTimeout: time.Second, RetryInitial: 10 * time.Millisecond,
		Handle: func(_ context.Context, evt *event.Event) { got <- evt }})
	defer s.Stop()
	for i, want := range []struct {
		room  id.RoomID
		event id.EventID
		user  id.UserID
	}{{"!a:hs", "$e1", "@bob:hs"}, {"!b:hs", "$e2", "@carol:hs"}} {
		select {
		case evt := <-got:
			rc, ok := evt.Content.Parsed.(*event.ReceiptEventContent)
			if evt.RoomID != want.room || evt.Type != event.EphemeralEventReceipt || !ok {
				t.Fatalf("receipt %d: room %s type %s parsed %T", i, evt.RoomID, evt.Type.Type, evt.Content.Parsed)
			}
			if _, ok := (*rc)[want.event][event.ReceiptTypeRead][want.user]; !ok {
				t.Errorf("receipt %d: %+v, want %s read by %s", i, *rc, want.event, want.user)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("receipt %d was not handed; syncs %q", i, hs.syncs)
		}
	}
	select {
	case evt := <-got:
		t.Errorf("handed an extra event %s", evt.Type.Type)
	case <-time.After(100 * time.Millisecond):
	}
	s.Stop()
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if len(hs.syncs) < 4 || hs.syncs[0] != "|f1" || hs.syncs[1] != "s1|f1" || hs.syncs[2] != "s1|f1" || hs.syncs[3] != "s2|f1" {
		t.Errorf("syncs (since|filter) %q, want |f1, s1|f1, s1|f1 (after the 502), s2|f1", hs.syncs)
	}
	room, _ := hs.filter["room"].(map[string]any)
	eph, _ := room["ephemeral"].(map[string]any)
	tl, _ := room["timeline"].(map[string]any)
	if b, _ := json.Marshal(eph["types"]); string(b) != `["m.receipt"]` {
		t.Errorf("ephemeral filter %v, want m.receipt only", eph)
	}
	if b, _ := json.Marshal(tl["not_types"]); string(b) != `["*"]` {
		t.Errorf("timeline filter %v, want every type left out", tl)
	}
}

// TestStopWhileLongPolling: Stop ends a /sync that is waiting.
func TestStopWhileLongPolling(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/filter") {
			_, _ = io.WriteString(w, `{"filter_id":"f1"}`)
			return
		}
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	cli, _ := mautrix.NewClient(srv.URL, "@bot:hs", "as-token")
	s := Start(Options{Client: cli, PollTimeout: time.Minute, Handle: func(context.Context, *event.Event) {}})
	time.Sleep(100 * time.Millisecond)
	stopped := make(chan struct{})
	go func() { s.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not end a waiting /sync")
	}
}

// TestIdleWhileInactive: no /sync runs while Active is false; once it
// turns true the sync starts.
func TestIdleWhileInactive(t *testing.T) {
	hs := &fakeHS{t: t, answers: []func(http.ResponseWriter){syncBody("s1", "!a:hs", "$e1", "@bob:hs")}}
	srv := httptest.NewServer(hs)
	defer srv.Close()
	cli, _ := mautrix.NewClient(srv.URL, "@bot:hs", "as-token")
	var active sync.Mutex
	on := false
	got := make(chan *event.Event, 1)
	s := Start(Options{Client: cli, PollTimeout: time.Second,
		Active: func() bool { active.Lock(); defer active.Unlock(); return on },
		Handle: func(_ context.Context, evt *event.Event) { got <- evt }})
	defer s.Stop()
	time.Sleep(1500 * time.Millisecond)
	hs.mu.Lock()
	n := len(hs.syncs)
	hs.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d syncs while inactive, want 0", n)
	}
	active.Lock()
	on = true
	active.Unlock()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no receipt after turning active")
	}
}
