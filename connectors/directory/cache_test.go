package directory_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/directory"
	"github.com/bubbled/bubbled/connectors/directory/isfake"
)

func TestCacheLifetimes(t *testing.T) {
	tests := []struct {
		name   string
		mod    func(*directory.Config)
		number string
		want   id.UserID
		ttl    time.Duration // how long the answer must be reused
	}{
		{name: "found: 24 h by default", number: carolNum, want: carol, ttl: 24 * time.Hour},
		{name: "not found: 1 h by default", number: daveNum, ttl: time.Hour},
		{name: "found: configured", number: carolNum, want: carol, ttl: 2 * time.Hour,
			mod: func(c *directory.Config) { c.FoundTTL = 2 * time.Hour }},
		{name: "not found: configured", number: daveNum, ttl: 5 * time.Minute,
			mod: func(c *directory.Config) { c.NotFoundTTL = 5 * time.Minute }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, isfake.Options{}, tc.mod)
			first := e.mustFind(tc.number, tc.want, directory.SourceIdentityServer)
			if first.FromCache {
				t.Fatal("first answer from cache")
			}
			fetched := e.clock.Now()

			e.clock.Advance(tc.ttl - time.Second)
			r := e.mustFind(tc.number, tc.want, directory.SourceIdentityServer)
			if !r.FromCache || !r.Fetched.Equal(fetched) {
				t.Errorf("1 s before expiry: FromCache %v Fetched %v; want the cached answer from %v", r.FromCache, r.Fetched, fetched)
			}
			if n := e.count("POST", isfake.PathLookup); n != 1 {
				t.Errorf("%d lookups before expiry, want 1", n)
			}

			// Meanwhile the binding changes; the cache hides it until the TTL ends.
			e.fake.Bind(tc.number, "@changed:hs.test")
			e.clock.Advance(time.Second)
			r = e.mustFind(tc.number, "@changed:hs.test", directory.SourceIdentityServer)
			if r.FromCache || !r.Fetched.Equal(e.clock.Now()) {
				t.Errorf("at expiry: FromCache %v Fetched %v; want a fresh answer", r.FromCache, r.Fetched)
			}
			if n := e.count("POST", isfake.PathLookup); n != 2 {
				t.Errorf("%d lookups after expiry, want 2", n)
			}
		})
	}
}

func TestInvalidate(t *testing.T) {
	tests := []struct {
		name       string
		invalidate string
		lookup     string
		wantAsked  bool
	}{
		{name: "E.164", invalidate: carolNum, lookup: carolNum, wantAsked: true},
		{name: "national form", invalidate: "(555) 123-0003", lookup: carolNum, wantAsked: true},
		{name: "other number keeps its answer", invalidate: daveNum, lookup: carolNum},
		{name: "garbage is ignored", invalidate: "not a number", lookup: carolNum},
		{name: "static answers stay", invalidate: bobNum, lookup: bobNum},
		{name: "local answers stay", invalidate: aliceNum, lookup: aliceNum},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, isfake.Options{}, nil)
			e.mustFind(carolNum, carol, directory.SourceIdentityServer)
			e.fake.Bind(carolNum, "@carol2:hs.test")
			before := e.count("POST", isfake.PathLookup)
			e.dir.Invalidate(tc.invalidate)
			r, err := e.lookup(tc.lookup)
			if err != nil {
				t.Fatal(err)
			}
			asked := e.count("POST", isfake.PathLookup) > before
			if asked != tc.wantAsked {
				t.Errorf("asked the identity server again = %v, want %v", asked, tc.wantAsked)
			}
			if tc.wantAsked && r.MXID != "@carol2:hs.test" {
				t.Errorf("after Invalidate got %q, want the new binding", r.MXID)
			}
			if !tc.wantAsked && tc.lookup == carolNum && (!r.FromCache || r.MXID != carol) {
				t.Errorf("got %+v, want carol from the cache", r)
			}
		})
	}
}

func TestCacheIsBounded(t *testing.T) {
	e := setup(t, isfake.Options{}, func(c *directory.Config) { c.MaxEntries = 3 })
	nums := []string{"+15552000001", "+15552000002", "+15552000003", "+15552000004"}
	for _, n := range nums {
		e.clock.Advance(time.Minute) // each expires a minute after the previous
		if _, err := e.lookup(n); err != nil {
			t.Fatal(err)
		}
	}
	// The oldest answer was evicted to make room; the newest three are still cached.
	before := e.count("POST", isfake.PathLookup)
	for _, n := range nums[1:] {
		if r, _ := e.lookup(n); !r.FromCache {
			t.Errorf("%s not cached", n)
		}
	}
	if r, _ := e.lookup(nums[0]); r.FromCache {
		t.Error("cache kept more than MaxEntries answers")
	}
	if got := e.count("POST", isfake.PathLookup) - before; got != 1 {
		t.Errorf("%d new lookups, want 1", got)
	}
}

// TestNoNumbersOrHashesInLogs runs every path (registration, terms, pepper rotation, 401,
// failures, batches) with a debug-level observer and checks that no phone number, hash,
// pepper or token reaches the logs or the returned errors.
func TestNoNumbersOrHashesInLogs(t *testing.T) {
	tosURL := "https://is.test/tos-2.0-en.html"
	e := setup(t, isfake.Options{Policies: []isfake.Policy{{ID: "tos", Version: "2.0", Docs: []isfake.PolicyDoc{{Lang: "en", Name: "ToS", URL: tosURL}}}}},
		func(c *directory.Config) {
			c.IdentityServer.AcceptedTerms = []string{tosURL}
		})
	var errs []error
	look := func(n string) {
		if _, err := e.lookup(n); err != nil {
			errs = append(errs, err)
		}
	}
	look(carolNum)
	look(daveNum)
	e.fake.RotatePepper()
	look(erinNum)
	e.fake.ExpireTokens()
	look("+15551230005")
	for _, r := range e.dir.LookupMany(context.Background(), []string{"+15551230006", "(555) 123-0007", "oops"}) {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	e.fake.SetIntercept(on(isfake.PathLookup, func(w http.ResponseWriter, _ *http.Request) {
		raw(w, http.StatusInternalServerError, "application/json", `{"errcode":"M_UNKNOWN","error":"failed `+directory.HashMSISDN("+15551230008", e.fake.Pepper())+`"}`)
	}))
	look("+15551230008")
	e.fake.SetIntercept(nil)
	e.fake.SetPolicies([]isfake.Policy{{ID: "tos", Version: "3", Docs: []isfake.PolicyDoc{{Lang: "en", Name: "ToS", URL: "https://is.test/tos-3"}}}})
	look("+15551230009")
	if err := e.dir.SetLocal(map[string]id.UserID{"+15551230010": "bad"}); err == nil {
		t.Fatal("SetLocal accepted a bad Matrix ID")
	}
	if len(errs) < 3 {
		t.Fatalf("only %d errors; the scenario did not exercise the failure paths", len(errs))
	}
	if e.logs.Len() == 0 {
		t.Fatal("nothing was logged; the check would be vacuous")
	}

	var secrets []string
	peppers := []string{"pepper1", e.fake.Pepper()}
	for i := 1; i <= 10; i++ {
		n := fmt.Sprintf("+155512300%02d", i)
		secrets = append(secrets, n, strings.TrimPrefix(n, "+"), "5551230"+fmt.Sprintf("%03d", i))
		for _, p := range peppers {
			secrets = append(secrets, directory.HashMSISDN(n, p))
		}
	}
	for _, n := range []string{erinNum} {
		secrets = append(secrets, n, strings.TrimPrefix(n, "+"))
		for _, p := range peppers {
			secrets = append(secrets, directory.HashMSISDN(n, p))
		}
	}
	secrets = append(secrets, peppers...)
	secrets = append(secrets, openIDTok)

	var texts []string
	for _, entry := range e.logs.All() {
		var b strings.Builder
		b.WriteString(entry.Message)
		for k, v := range entry.ContextMap() {
			fmt.Fprintf(&b, " %s=%v", k, v)
		}
		texts = append(texts, b.String())
	}
	for _, err := range errs {
		texts = append(texts, err.Error())
	}
	for _, text := range texts {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%q leaked into %q", s, text)
			}
		}
	}
	// Tokens issued by the identity server must not appear either.
	for _, r := range e.fake.Requests() {
		tok := strings.TrimPrefix(r.Authorization, "Bearer ")
		if tok == "" {
			continue
		}
		for _, text := range texts {
			if strings.Contains(text, tok) {
				t.Errorf("identity server token leaked into %q", text)
			}
		}
	}
}

func TestPlainHTTPWarning(t *testing.T) {
	tests := []struct {
		name string
		url  string
		warn bool
	}{
		{"https", "https://vector.im", false},
		{"http on loopback", "http://127.0.0.1:8090", false},
		{"http on localhost", "http://localhost:8090", false},
		{"http elsewhere", "http://is.example.org", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			_, err := directory.New(directory.Config{IdentityServer: directory.IdentityServerConfig{URL: tc.url}},
				directory.Options{OpenID: &openID{}, Log: zap.New(core)})
			if err != nil {
				t.Fatal(err)
			}
			if got := logs.FilterLevelExact(zapcore.WarnLevel).Len() > 0; got != tc.warn {
				t.Errorf("warned = %v, want %v", got, tc.warn)
			}
		})
	}
}

// BenchmarkLookupCached measures a lookup answered from the identity-server cache, the common
// case on the router's hot path (target: under 10 µs).
func BenchmarkLookupCached(b *testing.B) {
	fake := isfake.New(isfake.Options{Verifier: isfake.TokenTable{openIDTok: bot}})
	fake.Bind(carolNum, carol)
	if err := fake.Start(); err != nil {
		b.Fatal(err)
	}
	defer fake.Close()
	d, err := directory.New(directory.Config{
		DefaultRegion:  "US",
		Static:         map[string]string{bobNum: string(bob)},
		IdentityServer: directory.IdentityServerConfig{URL: fake.URL()},
	}, directory.Options{OpenID: &openID{}})
	if err != nil {
		b.Fatal(err)
	}
	if err := d.SetLocal(map[string]id.UserID{aliceNum: alice}); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, bc := range []struct{ name, number string }{
		{"identity_server_E164", carolNum},
		{"static_E164", bobNum},
		{"identity_server_national_form", "(555) 123-0003"},
	} {
		if r, err := d.Lookup(ctx, bc.number); err != nil || !r.Found() {
			b.Fatalf("warm-up %s: %+v %v", bc.name, r, err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r, err := d.Lookup(ctx, bc.number)
				if err != nil || !r.Found() {
					b.Fatal(r, err)
				}
			}
		})
	}
	b.Run("identity_server_E164_parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if r, err := d.Lookup(ctx, carolNum); err != nil || !r.Found() {
					b.Error(r, err)
					return
				}
			}
		})
	})
}
