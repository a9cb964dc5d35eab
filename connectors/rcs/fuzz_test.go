package rcs

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bubbled/bubbled/connectors/rcs/maapfake"
	"github.com/bubbled/bubbled/connectors/rcs/rbmfake"
)

func addFixtureSeeds(f *testing.F, prefix string) {
	files, _ := filepath.Glob(filepath.Join("testdata", prefix+"*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"senderPhoneNumber":"+15551230001","eventType":"READ","eventId":"e"}`))
}

// checkParsed holds for every payload: either a classified error, or an
// event with a valid sender, the right provider and (except MaaP typing)
// a key.
func checkParsed(t *testing.T, provider string, ev Event, err error) {
	if err != nil {
		if !errors.Is(err, errMalformed) && !errors.Is(err, errIgnored) {
			t.Fatalf("unclassified error: %v", err)
		}
		if ev != nil {
			t.Fatalf("event %#v with error %v", ev, err)
		}
		return
	}
	m := ev.Meta()
	if m.Provider != provider || !ValidNumber(m.Sender) || m.Time.IsZero() {
		t.Fatalf("bad meta %+v", m)
	}
	if _, typing := ev.(*TypingEvent); m.Key == "" && !(typing && provider == "maap") {
		t.Fatalf("event %#v without key", ev)
	}
	switch e := ev.(type) {
	case *MessageEvent:
		if e.File != nil && e.File.URL == "" {
			t.Fatal("file without URL")
		}
	case *DeliveredEvent, *ReadEvent, *FailedEvent:
		if m.MessageID == "" {
			t.Fatalf("%T without message ID", ev)
		}
	}
}

func FuzzParseRBM(f *testing.F) {
	addFixtureSeeds(f, "rbm_")
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, _, err := parseRBM(data, received)
		checkParsed(t, "rbm", ev, err)
	})
}

func FuzzParseMaaP(f *testing.F) {
	addFixtureSeeds(f, "maap_")
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := parseMaaP(data, received)
		checkParsed(t, "maap", ev, err)
	})
}

// FuzzWebhookRBM drives the whole handler with correctly signed envelopes
// around arbitrary data (and arbitrary raw envelopes): it must answer 200,
// 400 or 403 (401 for raw ones), never panic, and whatever it stored must
// decode again.
func FuzzWebhookRBM(f *testing.F) {
	addFixtureSeeds(f, "rbm_")
	f.Fuzz(func(t *testing.T, data []byte) {
		store := newMemStore()
		h, err := NewWebhookHandler(WebhookConfig{
			RBM:      &RBMWebhook{AgentID: "bubbled_test_agent", ClientToken: "tok"},
			Store:    store,
			Consumer: func(context.Context, Event) error { return nil },
			Clock:    newFakeClock(),
		})
		if err != nil {
			t.Fatal(err)
		}
		env, _ := json.Marshal(map[string]any{"message": map[string]any{"data": base64.StdEncoding.EncodeToString(data), "messageId": "1"}})
		for _, rq := range []struct {
			body []byte
			sig  string
			ok   []int
		}{
			{body: env, sig: rbmfake.Sign("tok", data), ok: []int{200, 400, 403}},
			{body: data, sig: "c2ln", ok: []int{200, 400, 401}},
		} {
			req := httptest.NewRequest(http.MethodPost, "/rcs/rbm", bytes.NewReader(rq.body))
			req.Header.Set("X-Goog-Signature", rq.sig)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if !containsInt(rq.ok, rec.Code) {
				t.Fatalf("status %d for %q", rec.Code, rq.body)
			}
		}
		pending, _ := store.Pending(context.Background(), 10)
		for _, se := range pending {
			if _, err := decodeStored(se); err != nil {
				t.Fatalf("stored event does not decode: %v", err)
			}
		}
	})
}

func FuzzWebhookMaaP(f *testing.F) {
	addFixtureSeeds(f, "maap_")
	f.Fuzz(func(t *testing.T, body []byte) {
		store := newMemStore()
		h, err := NewWebhookHandler(WebhookConfig{
			MaaP:     &MaaPWebhook{BotID: "bot", Secret: "s"},
			Store:    store,
			Consumer: func(context.Context, Event) error { return nil },
			Clock:    newFakeClock(),
		})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/rcs/maap", bytes.NewReader(body))
		req.Header.Set(DefaultMaaPSignatureHeader, maapfake.Sign("s", body, false))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 && rec.Code != 400 {
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		if rec.Code == 400 && !strings.Contains(rec.Body.String(), "Bad Request") {
			t.Fatalf("400 body %q", rec.Body.String())
		}
		pending, _ := store.Pending(context.Background(), 10)
		for _, se := range pending {
			if _, err := decodeStored(se); err != nil {
				t.Fatalf("stored event does not decode: %v", err)
			}
		}
	})
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
