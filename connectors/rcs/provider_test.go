package rcs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bubbled/bubbled/connectors/rcs/maapfake"
	"github.com/bubbled/bubbled/connectors/rcs/rbmfake"
)

const (
	alice = "+15551230001"
	bob   = "+447700900123"
)

// sent is a message as a fake recorded it.
type sent struct {
	To, ID, Text, FileURL string
}

// harness drives one provider against its fake, so the same cases run for
// RBM and MaaP.
type harness struct {
	p             Provider
	clock         *fakeClock
	reachable     func(number string)
	remove        func(number string)
	fail          func(status int, retryAfter string)
	failToken     func(status int)
	expire        func()
	tokenRequests func() int
	apiRequests   func() int
	sent          func() []sent
	rejections    func() []string
}

func rbmHarness(t *testing.T, opts rbmfake.Options) *harness {
	fake := startRBMFake(t, opts)
	clock := newFakeClock()
	return &harness{
		p:     newTestRBM(t, fake, clock),
		clock: clock,
		reachable: func(n string) {
			fake.SetCapabilities(n, "RICHCARD_STANDALONE", "ACTION_DIAL")
		},
		remove: fake.RemoveNumber,
		fail: func(st int, ra string) {
			fake.Fail(rbmfake.Failure{Status: st, RetryAfter: ra})
		},
		failToken:     func(st int) { fake.Fail(rbmfake.Failure{Status: st, Token: true}) },
		expire:        fake.ExpireTokens,
		tokenRequests: fake.TokenRequests,
		apiRequests:   fake.APIRequests,
		sent: func() []sent {
			var out []sent
			for _, m := range fake.Messages() {
				out = append(out, sent{To: m.Phone, ID: m.MessageID, Text: m.Text, FileURL: m.FileURL})
			}
			return out
		},
		rejections: fake.Rejections,
	}
}

func maapHarness(t *testing.T) *harness {
	fake := startMaaPFake(t, maapfake.Options{})
	clock := newFakeClock()
	return &harness{
		p:     newTestMaaP(t, fake, clock),
		clock: clock,
		reachable: func(n string) {
			fake.SetCapabilities(n, "chat", "chatBotCommunication", "fileTransfer")
		},
		remove: fake.RemoveNumber,
		fail: func(st int, ra string) {
			fake.Fail(maapfake.Failure{Status: st, RetryAfter: ra})
		},
		failToken:     func(st int) { fake.Fail(maapfake.Failure{Status: st, Token: true}) },
		expire:        fake.ExpireTokens,
		tokenRequests: fake.TokenRequests,
		apiRequests:   fake.APIRequests,
		sent: func() []sent {
			var out []sent
			for _, m := range fake.Messages() {
				out = append(out, sent{To: m.Contact, ID: m.MsgID, Text: m.Text, FileURL: m.FileURL})
			}
			return out
		},
		rejections: fake.Rejections,
	}
}

// forEachProvider runs fn against RBM (409 on duplicates), RBM (silent
// duplicates, as documented) and MaaP.
func forEachProvider(t *testing.T, fn func(t *testing.T, h *harness)) {
	t.Run("rbm", func(t *testing.T) { fn(t, rbmHarness(t, rbmfake.Options{})) })
	t.Run("rbm-silent-duplicates", func(t *testing.T) { fn(t, rbmHarness(t, rbmfake.Options{DuplicatesSilent: true})) })
	t.Run("maap", func(t *testing.T) { fn(t, maapHarness(t)) })
}

func TestProviderCapability(t *testing.T) {
	forEachProvider(t, func(t *testing.T, h *harness) {
		h.reachable(alice)
		cases := []struct {
			name      string
			number    string
			reachable bool
			err       error
		}{
			{name: "reachable", number: alice, reachable: true},
			{name: "404 is not reachable", number: bob},
			{name: "not E.164", number: "07700900123", err: ErrInvalidRequest},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				ok, features, err := h.p.Capability(context.Background(), tc.number)
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				if ok != tc.reachable {
					t.Fatalf("reachable = %v, want %v", ok, tc.reachable)
				}
				if ok && len(features) == 0 {
					t.Fatal("reachable number without features")
				}
			})
		}
		if r := h.rejections(); len(r) != 1 || !strings.Contains(r[0], "404") {
			t.Errorf("fake rejections = %q, want only the 404", r)
		}
	})
}

func TestProviderSend(t *testing.T) {
	forEachProvider(t, func(t *testing.T, h *harness) {
		h.reachable(alice)
		ctx := context.Background()
		id, err := h.p.Send(ctx, alice, &OutboundMessage{EventID: "$ev1:example.org", Text: "héllo 👋"})
		if err != nil {
			t.Fatalf("send text: %v (fake: %q)", err, h.rejections())
		}
		if want := MessageID("$ev1:example.org", 0); id != want {
			t.Fatalf("id = %s, want %s", id, want)
		}
		fid, err := h.p.Send(ctx, alice, &OutboundMessage{EventID: "$ev1:example.org", Part: 1,
			File: &FileRef{URL: "https://media.example.org/cat.jpg", Name: "cat.jpg", MIMEType: "image/jpeg", Size: 1234}})
		if err != nil {
			t.Fatalf("send file: %v (fake: %q)", err, h.rejections())
		}
		want := []sent{
			{To: alice, ID: id, Text: "héllo 👋"},
			{To: alice, ID: fid, FileURL: "https://media.example.org/cat.jpg"},
		}
		if got := h.sent(); !slices.Equal(got, want) {
			t.Fatalf("fake recorded %+v, want %+v", got, want)
		}
	})
}

func TestProviderSendRetryIsIdempotent(t *testing.T) {
	forEachProvider(t, func(t *testing.T, h *harness) {
		h.reachable(alice)
		m := &OutboundMessage{EventID: "$crash:example.org", Text: "only once"}
		id1, err := h.p.Send(context.Background(), alice, m)
		if err != nil {
			t.Fatalf("first send: %v", err)
		}
		// A restart after a crash: same event, new provider state.
		id2, err := h.p.Send(context.Background(), alice, m)
		if err != nil {
			t.Fatalf("retried send: %v (fake: %q)", err, h.rejections())
		}
		if id1 != id2 {
			t.Fatalf("retry got id %s, first %s", id2, id1)
		}
		if got := h.sent(); len(got) != 1 {
			t.Fatalf("fake recorded %d messages, want 1: %+v", len(got), got)
		}
	})
}

func TestProviderSendValidation(t *testing.T) {
	cases := []struct {
		name string
		to   string
		m    *OutboundMessage
		err  error
	}{
		{name: "no event ID", to: alice, m: &OutboundMessage{Text: "x"}, err: ErrInvalidRequest},
		{name: "empty", to: alice, m: &OutboundMessage{EventID: "$e"}, err: ErrInvalidRequest},
		{name: "text and file", to: alice, m: &OutboundMessage{EventID: "$e", Text: "x", File: &FileRef{URL: "https://x/y"}}, err: ErrInvalidRequest},
		{name: "file without URL", to: alice, m: &OutboundMessage{EventID: "$e", File: &FileRef{}}, err: ErrInvalidRequest},
		{name: "national number", to: "07700900123", m: &OutboundMessage{EventID: "$e", Text: "x"}, err: ErrInvalidRequest},
		{name: "too long", to: alice, m: &OutboundMessage{EventID: "$e", Text: strings.Repeat("é", MaxTextLength+1)}, err: ErrTooLong},
	}
	forEachProvider(t, func(t *testing.T, h *harness) {
		h.reachable(alice)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				before := h.apiRequests()
				_, err := h.p.Send(context.Background(), tc.to, tc.m)
				if !errors.Is(err, tc.err) || !errors.Is(err, ErrPermanent) {
					t.Fatalf("err = %v, want %v (and ErrPermanent)", err, tc.err)
				}
				if n := h.apiRequests() - before; n != 0 {
					t.Fatalf("made %d requests for an invalid message", n)
				}
			})
		}
		// Exactly the limit fits.
		if _, err := h.p.Send(context.Background(), alice, &OutboundMessage{EventID: "$max", Text: strings.Repeat("é", MaxTextLength)}); err != nil {
			t.Fatalf("send %d characters: %v (fake: %q)", MaxTextLength, err, h.rejections())
		}
	})
}

func TestProviderFailures(t *testing.T) {
	type tc struct {
		name       string
		setup      func(h *harness)
		err        error // nil = success
		sleeps     []time.Duration
		tokens     int           // token grants expected after the call
		retryAfter time.Duration // expected APIError.RetryAfter
		sentCount  int
	}
	cases := []tc{
		{name: "429 with Retry-After honoured", setup: func(h *harness) { h.fail(429, "7") },
			sleeps: []time.Duration{7 * time.Second}, tokens: 1, sentCount: 1},
		{name: "5xx retried with backoff then ok", setup: func(h *harness) { h.fail(503, ""); h.fail(500, "") },
			// Initial 500ms: retry 1 waits 250ms+125ms, retry 2 waits 500ms+250ms (halfJitter).
			sleeps: []time.Duration{375 * time.Millisecond, 750 * time.Millisecond}, tokens: 1, sentCount: 1},
		{name: "5xx until attempts run out", setup: func(h *harness) {
			for range 4 {
				h.fail(502, "")
			}
		}, err: ErrTemporary, sleeps: []time.Duration{375 * time.Millisecond, 750 * time.Millisecond, 1500 * time.Millisecond}, tokens: 1},
		{name: "Retry-After beyond the cap is returned", setup: func(h *harness) { h.fail(429, "600") },
			err: ErrTemporary, tokens: 1, retryAfter: 10 * time.Minute},
		{name: "404 means not RCS", setup: func(h *harness) { h.remove(alice) }, err: ErrNotRCS, tokens: 1},
		{name: "401 refreshes the token once", setup: func(h *harness) { h.fail(401, "") }, tokens: 2, sentCount: 1},
		{name: "expired token refreshed", setup: func(h *harness) { h.expire() }, tokens: 2, sentCount: 1},
		{name: "401 after refresh is ErrAuth", setup: func(h *harness) { h.fail(401, ""); h.fail(401, "") }, err: ErrAuth, tokens: 2},
		{name: "403 is permanent, not retried", setup: func(h *harness) { h.fail(403, "") }, err: ErrPermanent, tokens: 1},
		{name: "token endpoint 503 retried", setup: func(h *harness) { h.failToken(503) },
			sleeps: []time.Duration{375 * time.Millisecond}, tokens: 1, sentCount: 1},
		{name: "token endpoint refuses credentials", setup: func(h *harness) { h.failToken(401) }, err: ErrAuth},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forEachProvider(t, func(t *testing.T, h *harness) {
				h.reachable(alice)
				// Warm up the token unless the case is about the token
				// endpoint itself.
				if !strings.HasPrefix(c.name, "token endpoint") {
					if _, _, err := h.p.Capability(context.Background(), alice); err != nil {
						t.Fatalf("warm-up: %v", err)
					}
				}
				c.setup(h)
				_, err := h.p.Send(context.Background(), alice, &OutboundMessage{EventID: "$fail:example.org", Text: "hi"})
				if c.err == nil && err != nil {
					t.Fatalf("send: %v (fake: %q)", err, h.rejections())
				}
				if c.err != nil && !errors.Is(err, c.err) {
					t.Fatalf("err = %v, want %v", err, c.err)
				}
				for _, other := range []error{ErrNotRCS, ErrTemporary, ErrPermanent, ErrAuth} {
					if other != c.err && errors.Is(err, other) {
						t.Errorf("err %v also matches %v", err, other)
					}
				}
				if got := h.clock.Sleeps(); !slices.Equal(got, c.sleeps) {
					t.Errorf("sleeps = %v, want %v", got, c.sleeps)
				}
				if got := h.tokenRequests(); got != c.tokens {
					t.Errorf("token grants = %d, want %d", got, c.tokens)
				}
				if got := len(h.sent()); got != c.sentCount {
					t.Errorf("fake recorded %d messages, want %d", got, c.sentCount)
				}
				var apiErr *APIError
				if c.retryAfter > 0 && (!errors.As(err, &apiErr) || apiErr.RetryAfter != c.retryAfter) {
					t.Errorf("err %v: want RetryAfter %v", err, c.retryAfter)
				}
			})
		})
	}
}

func TestProviderCancelDuringBackoff(t *testing.T) {
	fake := startRBMFake(t, rbmfake.Options{})
	fake.SetCapabilities(alice)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := newTestRBM(t, fake, &cancelOnSleep{cancel: cancel})
	fake.Fail(rbmfake.Failure{Status: 503})
	_, err := p.Send(ctx, alice, &OutboundMessage{EventID: "$e", Text: "x"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if errors.Is(err, ErrTemporary) {
		t.Fatalf("cancelled call reported as temporary: %v", err)
	}
}

func TestProviderNetworkErrorIsTemporary(t *testing.T) {
	fake := startRBMFake(t, rbmfake.Options{})
	p := newTestRBM(t, fake, newFakeClock())
	fake.Close()
	_, _, err := p.Capability(context.Background(), alice)
	if !errors.Is(err, ErrTemporary) {
		t.Fatalf("err = %v, want ErrTemporary", err)
	}
}
