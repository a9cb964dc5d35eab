package rcs

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest/observer"

	"github.com/bubbled/bubbled/connectors/rcs/maapfake"
	"github.com/bubbled/bubbled/connectors/rcs/rbmfake"
	"github.com/bubbled/bubbled/fallback/fallbacktest"
)

// hardenedEnv is a started webhook handler on a manual clock, which only
// moves when the test advances it.
type hardenedEnv struct {
	rbm    *rbmfake.Server
	maap   *maapfake.Server
	h      *WebhookHandler
	clock  *fallbacktest.Clock
	logs   *observer.ObservedLogs
	url    string
	events chan Event
}

func newHardenedEnv(t *testing.T) *hardenedEnv {
	t.Helper()
	e := &hardenedEnv{
		rbm:    startRBMFake(t, rbmfake.Options{}),
		maap:   startMaaPFake(t, maapfake.Options{}),
		clock:  fallbacktest.NewClock(time.Now()),
		events: make(chan Event, 100),
	}
	log, logs := observedLogger(t)
	e.logs = logs
	h, err := NewWebhookHandler(WebhookConfig{
		RBM:   &RBMWebhook{AgentID: e.rbm.AgentID(), ClientToken: e.rbm.ClientToken()},
		MaaP:  &MaaPWebhook{BotID: e.maap.BotID(), Secret: e.maap.WebhookSecret()},
		Store: NewDBEventStore(testDB(t)),
		Consumer: func(ctx context.Context, ev Event) error {
			e.events <- ev
			return nil
		},
		Logger: log,
		Clock:  e.clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	mux := http.NewServeMux()
	mux.Handle("/rcs/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e.url = srv.URL + "/rcs/"
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	return e
}

// rbmMessage is a UserMessage sent at the given time.
func (e *hardenedEnv) rbmMessage(text string, at time.Time) ([]byte, string) {
	id := fmt.Sprintf("MsG%d", at.UnixNano())
	b, _ := json.Marshal(map[string]any{"senderPhoneNumber": alice, "messageId": id, "agentId": e.rbm.AgentID(),
		"sendTime": at.UTC().Format(time.RFC3339Nano), "text": text})
	return b, id
}

func (e *hardenedEnv) next(t *testing.T, want string) {
	t.Helper()
	select {
	case ev := <-e.events:
		if ev.Meta().MessageID != want {
			t.Fatalf("handed over %#v, want message %s", ev, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("message %s never reached the consumer", want)
	}
}

func (e *hardenedEnv) none(t *testing.T) {
	t.Helper()
	select {
	case ev := <-e.events:
		t.Fatalf("handed over %#v, want nothing", ev)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestWebhookReplayAfterRetention: once a handled event's row is pruned
// after the retention, replaying its signed payload must not hand it over
// a second time (RBM and MaaP), while fresh events still pass.
func TestWebhookReplayAfterRetention(t *testing.T) {
	e := newHardenedEnv(t)
	ctx := context.Background()
	old, oldID := e.rbmMessage("pay the bill", e.clock.Now())
	res, err := e.rbm.Push(ctx, e.url+"rbm", old, rbmfake.Signed)
	expectStatus(t, "first push", res.Status, err, 200)
	e.next(t, oldID)
	oldMaaP, oldMaaPID := e.maap.UserMessage(bob, "maap once")
	mres, err := e.maap.Push(ctx, e.url+"maap", oldMaaP, maapfake.Signed)
	expectStatus(t, "first MaaP push", mres.Status, err, 200)
	e.next(t, oldMaaPID)

	// Fifteen days on, a fresh event wakes the worker, which prunes the
	// handled rows older than the 14-day retention.
	e.clock.Advance(15 * 24 * time.Hour)
	fresh, freshID := e.rbmMessage("fresh", e.clock.Now())
	res, err = e.rbm.Push(ctx, e.url+"rbm", fresh, rbmfake.Signed)
	expectStatus(t, "fresh push", res.Status, err, 200)
	e.next(t, freshID)
	// The worker prunes around handing the fresh event over: wait for it.
	var rows int
	var err2 error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err2 = e.h.cfg.Store.(*DBEventStore).db.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_rcs_event`).Scan(&rows); err2 == nil && rows == 1 {
			break
		}
	}
	if err2 != nil || rows != 1 {
		t.Fatalf("rows after pruning = %d, %v; want only the fresh one (test setup)", rows, err2)
	}

	res, err = e.rbm.Push(ctx, e.url+"rbm", old, rbmfake.Signed)
	expectStatus(t, "RBM replay after retention", res.Status, err, http.StatusBadRequest)
	mres, err = e.maap.Push(ctx, e.url+"maap", oldMaaP, maapfake.Signed)
	expectStatus(t, "MaaP replay after retention", mres.Status, err, http.StatusBadRequest)
	e.none(t)
	if n := e.logs.FilterMessageSnippet("older than the replay window").Len(); n != 1 {
		t.Errorf("logged %d replay lines, want 1 (the second is in the interval's count)", n)
	}

	// Just inside the window (13 days old) is still accepted.
	inside, insideID := e.rbmMessage("late retry", e.clock.Now().Add(-13*24*time.Hour))
	res, err = e.rbm.Push(ctx, e.url+"rbm", inside, rbmfake.Signed)
	expectStatus(t, "13-day-old push", res.Status, err, 200)
	e.next(t, insideID)
}

// TestWebhookRejectionLogRateLimited: a flood of rejected requests writes
// one full line, then one summary line per interval with the count, and
// nothing for quiet intervals; Stop reports what is still counted.
func TestWebhookRejectionLogRateLimited(t *testing.T) {
	e := newHardenedEnv(t)
	ctx := context.Background()
	data, _ := e.rbm.UserMessage(alice, "x")
	flood := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			res, err := e.rbm.Push(ctx, e.url+"rbm", data, rbmfake.WrongKey)
			expectStatus(t, "forged push", res.Status, err, 401)
		}
		res, err := e.maap.Push(ctx, e.url+"maap", []byte(`{}`), maapfake.Unsigned)
		expectStatus(t, "unsigned MaaP push", res.Status, err, 401)
		resp, err := http.Get(e.url + "nope")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	summaries := func() []observer.LoggedEntry {
		return e.logs.FilterMessageSnippet("without logging each").All()
	}
	flood(50)
	if n := e.logs.FilterMessageSnippet("bad X-Goog-Signature").Len(); n != 1 {
		t.Errorf("first interval: %d full lines, want 1", n)
	}
	if n := len(summaries()); n != 0 {
		t.Errorf("a summary before the interval ended")
	}
	e.clock.Advance(time.Minute)
	s := summaries()
	if len(s) != 1 || s[0].ContextMap()["count"] != int64(51) || !strings.Contains(s[0].ContextMap()["statuses"].(string), "50×401") {
		t.Fatalf("summary after the first interval = %v, want one line counting 51 (50×401, 1×404)", s)
	}
	// The flood goes on: still no full line, one more summary.
	flood(20)
	e.clock.Advance(time.Minute)
	if n := e.logs.FilterMessageSnippet("bad X-Goog-Signature").Len(); n != 1 {
		t.Errorf("second interval: %d full lines in all, want still 1", n)
	}
	if s := summaries(); len(s) != 2 || s[1].ContextMap()["count"] != int64(22) {
		t.Fatalf("summaries after the second interval = %v, want a second counting 22", s)
	}
	// A quiet interval writes nothing and reopens full logging.
	e.clock.Advance(time.Minute)
	e.clock.Advance(time.Minute)
	if n := len(summaries()); n != 2 {
		t.Errorf("quiet intervals wrote %d summaries, want none", n-2)
	}
	flood(3)
	if n := e.logs.FilterMessageSnippet("bad X-Goog-Signature").Len(); n != 2 {
		t.Errorf("after a quiet interval: %d full lines in all, want 2", n)
	}
	e.h.Stop()
	if s := summaries(); len(s) != 3 || s[2].ContextMap()["count"] != int64(4) {
		t.Fatalf("Stop logged %v, want a summary of the 4 still counted", s)
	}
	if n := e.clock.Timers(); n != 0 {
		t.Errorf("%d timers left after Stop", n)
	}
}
