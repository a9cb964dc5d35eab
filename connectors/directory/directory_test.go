package directory_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/directory"
	"github.com/bubbled/bubbled/connectors/directory/isfake"
	"github.com/bubbled/bubbled/connectors/phone"
)

func TestHashMSISDNSpecVector(t *testing.T) {
	tests := []struct {
		name, number, pepper, want string
	}{
		{"spec vector with plus", "+18005552067", "matrixrocks", "nlo35_T5fzSGZzJApqu8lgIudJvmOQtDaHtr-I4rU7I"},
		{"spec vector without plus", "18005552067", "matrixrocks", "nlo35_T5fzSGZzJApqu8lgIudJvmOQtDaHtr-I4rU7I"},
		{"agrees with the fake", carolNum, "pepper1", isfake.Hash(strings.TrimPrefix(carolNum, "+"), "msisdn", "pepper1")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := directory.HashMSISDN(tc.number, tc.pepper); got != tc.want {
				t.Errorf("HashMSISDN(%q, %q) = %s, want %s", tc.number, tc.pepper, got, tc.want)
			}
		})
	}
}

// TestMask checks that the directory's errors show numbers by the one masking rule
// (phone.Mask: the last two digits only).
func TestMask(t *testing.T) {
	d, err := directory.New(directory.Config{}, directory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, in, want string }{
		{"E.164", "+15551234567", "+*********67"},
		{"national", "5551234567", "********67"},
		{"short", "+1234", "+**34"},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := phone.Mask(tc.in); got != tc.want {
				t.Errorf("Mask(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if tc.in == "+15551234567" {
				return // a number: no error to show it in
			}
			_, err := d.Lookup(context.Background(), tc.in)
			if err == nil || !strings.Contains(err.Error(), strconv.Quote(tc.want)) {
				t.Errorf("Lookup(%q) error %v does not show the number as %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestNewValidation(t *testing.T) {
	oid := &openID{}
	tests := []struct {
		name string
		cfg  directory.Config
		opts directory.Options
		want []string // substrings of the error; none means New must succeed
	}{
		{name: "valid table in several forms", cfg: directory.Config{DefaultRegion: "US", Static: map[string]string{
			"+1 555 123 0002": "@bob:hs.test", "(555) 123-0003": "@carol:other.test", "tel:+447700900123": " @erin:other.test ",
		}}},
		{name: "same number twice with the same user is fine", cfg: directory.Config{DefaultRegion: "US", Static: map[string]string{
			"+15551230002": "@bob:hs.test", "555-123-0002": "@bob:hs.test",
		}}},
		{name: "too short number", cfg: directory.Config{DefaultRegion: "US", Static: map[string]string{"12": "@bob:hs.test"}},
			want: []string{`directory.static["12"]`, "is not a phone number", "international form"}},
		{name: "letters", cfg: directory.Config{DefaultRegion: "US", Static: map[string]string{"bob": "@bob:hs.test"}},
			want: []string{`directory.static["bob"]`, "is not a phone number"}},
		{name: "national number without region", cfg: directory.Config{Static: map[string]string{"5551230002": "@bob:hs.test"}},
			want: []string{`directory.static["5551230002"]`, "international form"}},
		{name: "Matrix ID without sigil", cfg: directory.Config{DefaultRegion: "US", Static: map[string]string{"+15551230002": "bob"}},
			want: []string{`directory.static["+15551230002"]`, `"bob" is not a Matrix user ID`, "@bob:example.org"}},
		{name: "Matrix ID without server", cfg: directory.Config{DefaultRegion: "US", Static: map[string]string{"+15551230002": "@bob"}},
			want: []string{`directory.static["+15551230002"]`, "not a Matrix user ID"}},
		{name: "room ID instead of user", cfg: directory.Config{DefaultRegion: "US", Static: map[string]string{"+15551230002": "!room:hs.test"}},
			want: []string{`directory.static["+15551230002"]`, "not a Matrix user ID"}},
		{name: "bad server name", cfg: directory.Config{DefaultRegion: "US", Static: map[string]string{"+15551230002": "@bob:bad_server!"}},
			want: []string{`directory.static["+15551230002"]`, "not a Matrix user ID"}},
		{name: "same number twice for different users", cfg: directory.Config{DefaultRegion: "US", Static: map[string]string{
			"+15551230002": "@bob:hs.test", "555 123 0002": "@mallory:hs.test",
		}}, want: []string{`directory.static["555 123 0002"]`, `directory.static["+15551230002"]`, "keep one"}},
		{name: "every bad entry is named", cfg: directory.Config{DefaultRegion: "US", Static: map[string]string{
			"12": "@bob:hs.test", "+15551230002": "bob",
		}}, want: []string{`directory.static["12"]`, `directory.static["+15551230002"]`}},
		{name: "unknown region", cfg: directory.Config{DefaultRegion: "XX"},
			want: []string{"network.default_region", `"XX"`}},
		{name: "negative found TTL", cfg: directory.Config{FoundTTL: -time.Hour},
			want: []string{"directory.found_ttl", "negative"}},
		{name: "negative not-found TTL", cfg: directory.Config{NotFoundTTL: -time.Second},
			want: []string{"directory.not_found_ttl"}},
		{name: "negative max entries", cfg: directory.Config{MaxEntries: -1},
			want: []string{"directory.max_entries"}},
		{name: "identity server URL without scheme", cfg: directory.Config{IdentityServer: directory.IdentityServerConfig{URL: "vector.im"}},
			opts: directory.Options{OpenID: oid}, want: []string{"directory.identity_server.url", `"vector.im"`, "https://"}},
		{name: "identity server URL with API path", cfg: directory.Config{IdentityServer: directory.IdentityServerConfig{URL: "https://vector.im/_matrix/identity/v2"}},
			opts: directory.Options{OpenID: oid}, want: []string{"directory.identity_server.url", "only the base URL"}},
		{name: "identity server URL with password", cfg: directory.Config{IdentityServer: directory.IdentityServerConfig{URL: "https://u:secret@vector.im"}},
			opts: directory.Options{OpenID: oid}, want: []string{"directory.identity_server.url", "without them"}},
		{name: "identity server without OpenID source", cfg: directory.Config{IdentityServer: directory.IdentityServerConfig{URL: "https://vector.im"}},
			want: []string{"Options.OpenID"}},
		{name: "empty accepted term", cfg: directory.Config{IdentityServer: directory.IdentityServerConfig{URL: "https://vector.im", AcceptedTerms: []string{"https://a", " "}}},
			opts: directory.Options{OpenID: oid}, want: []string{"directory.identity_server.accepted_terms[1]", "is empty"}},
		{name: "negative identity server timeout", cfg: directory.Config{IdentityServer: directory.IdentityServerConfig{URL: "https://vector.im", Timeout: -1}},
			opts: directory.Options{OpenID: oid}, want: []string{"directory.identity_server.timeout"}},
		{name: "valid identity server", cfg: directory.Config{IdentityServer: directory.IdentityServerConfig{URL: "https://vector.im/", AcceptedTerms: []string{"https://vector.im/terms"}}},
			opts: directory.Options{OpenID: oid}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := directory.New(tc.cfg, tc.opts)
			if len(tc.want) == 0 {
				if err != nil || d == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestStaticNationalFormsResolve(t *testing.T) {
	d, err := directory.New(directory.Config{DefaultRegion: "US", Static: map[string]string{"(555) 123-0002": "@bob:hs.test"}}, directory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"+15551230002", "555-123-0002", "+1 555 123 0002", "tel:+15551230002"} {
		r, err := d.Lookup(context.Background(), in)
		if err != nil || r.MXID != bob || r.Source != directory.SourceStatic {
			t.Errorf("Lookup(%q) = %+v, %v", in, r, err)
		}
	}
}

func TestSourcesInOrder(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*directory.Config)
		prepare func(e *env)
		number  string
		want    id.UserID
		src     directory.Source
		askedIS bool
	}{
		{name: "local line", number: aliceNum, want: alice, src: directory.SourceLocal},
		{name: "static table", number: bobNum, want: bob, src: directory.SourceStatic},
		{name: "identity server", number: carolNum, want: carol, src: directory.SourceIdentityServer, askedIS: true},
		{name: "identity server does not know it", number: daveNum, src: directory.SourceIdentityServer, askedIS: true},
		{name: "national form of a local line", number: "(555) 123-0001", want: alice, src: directory.SourceLocal},
		{name: "local beats static and identity server", number: bobNum, want: alice, src: directory.SourceLocal,
			prepare: func(e *env) {
				e.fake.Bind(bobNum, carol)
				if err := e.dir.SetLocal(map[string]id.UserID{bobNum: alice}); err != nil {
					e.t.Fatal(err)
				}
			}},
		{name: "static beats identity server", number: bobNum, want: bob, src: directory.SourceStatic,
			prepare: func(e *env) { e.fake.Bind(bobNum, carol) }},
		{name: "removed local line falls through to identity server", number: aliceNum, want: carol, src: directory.SourceIdentityServer, askedIS: true,
			prepare: func(e *env) {
				e.fake.Bind(aliceNum, carol)
				if err := e.dir.SetLocal(nil); err != nil {
					e.t.Fatal(err)
				}
			}},
		{name: "no identity server configured", number: carolNum, src: directory.SourceNone,
			mod: func(c *directory.Config) { c.IdentityServer.URL = "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, isfake.Options{}, tc.mod)
			if tc.prepare != nil {
				tc.prepare(e)
			}
			r := e.mustFind(tc.number, tc.want, tc.src)
			if r.Found() != (tc.want != "") {
				t.Errorf("Found() = %v", r.Found())
			}
			if r.FromCache {
				t.Error("first answer claims to come from the cache")
			}
			if !r.Fetched.Equal(e.clock.Now()) {
				t.Errorf("Fetched = %v, want %v", r.Fetched, e.clock.Now())
			}
			if asked := e.count("POST", isfake.PathLookup) > 0; asked != tc.askedIS {
				t.Errorf("asked identity server = %v, want %v", asked, tc.askedIS)
			}
		})
	}
}

func TestSetLocal(t *testing.T) {
	tests := []struct {
		name  string
		lines map[string]id.UserID
		want  []string // substrings of the error
	}{
		{name: "replaces the table", lines: map[string]id.UserID{daveNum: "@dave:hs.test"}},
		{name: "bad number", lines: map[string]id.UserID{"12": alice}, want: []string{`local["12"]`, "not a phone number"}},
		{name: "bad Matrix ID", lines: map[string]id.UserID{daveNum: "dave"}, want: []string{`local["+15551230004"]`, "not a Matrix user ID"}},
		{name: "two lines claim one number", lines: map[string]id.UserID{daveNum: "@dave:hs.test", "555 123 0004": "@eve:hs.test"},
			want: []string{"same number", "keep one"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, isfake.Options{}, nil)
			e.clock.Advance(time.Minute)
			err := e.dir.SetLocal(tc.lines)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				r := e.mustFind(daveNum, "@dave:hs.test", directory.SourceLocal)
				if !r.Fetched.Equal(e.clock.Now()) {
					t.Errorf("Fetched = %v, want the SetLocal time %v", r.Fetched, e.clock.Now())
				}
				e.mustFind(aliceNum, "", directory.SourceIdentityServer) // no longer local
				return
			}
			if err == nil {
				t.Fatal("SetLocal succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q: %v", w, err)
				}
			}
			if !errors.Is(err, directory.ErrBadNumber) && strings.Contains(tc.want[0], "phone") {
				t.Errorf("error does not wrap ErrBadNumber: %v", err)
			}
			e.mustFind(aliceNum, alice, directory.SourceLocal) // old table kept
		})
	}
}

func TestBadNumber(t *testing.T) {
	e := setup(t, isfake.Options{}, nil)
	for _, in := range []string{"", "hello", "12", "+999123"} {
		t.Run(in, func(t *testing.T) {
			r, err := e.lookup(in)
			if !errors.Is(err, directory.ErrBadNumber) || r.Found() {
				t.Errorf("Lookup(%q) = %+v, %v; want ErrBadNumber", in, r, err)
			}
		})
	}
	if n := len(e.fake.Requests()); n != 0 {
		t.Errorf("bad numbers caused %d identity server requests", n)
	}
}

func TestLookupMany(t *testing.T) {
	e := setup(t, isfake.Options{}, nil)
	numbers := []string{aliceNum, bobNum, carolNum, daveNum, "bad", "(555) 123-0003", erinNum, carolNum}
	res := e.dir.LookupMany(context.Background(), numbers)
	want := []struct {
		mxid id.UserID
		src  directory.Source
		err  error
	}{
		{alice, directory.SourceLocal, nil},
		{bob, directory.SourceStatic, nil},
		{carol, directory.SourceIdentityServer, nil},
		{"", directory.SourceIdentityServer, nil},
		{"", directory.SourceNone, directory.ErrBadNumber},
		{carol, directory.SourceIdentityServer, nil},
		{erin, directory.SourceIdentityServer, nil},
		{carol, directory.SourceIdentityServer, nil},
	}
	if len(res) != len(want) {
		t.Fatalf("%d results for %d numbers", len(res), len(numbers))
	}
	for i, w := range want {
		r := res[i]
		if r.MXID != w.mxid || r.Source != w.src || !errors.Is(r.Err, w.err) || (w.err == nil && r.Err != nil) {
			t.Errorf("[%d] %s: got %q from %q err %v; want %q from %q err %v", i, numbers[i], r.MXID, r.Source, r.Err, w.mxid, w.src, w.err)
		}
	}
	if n := e.count("POST", isfake.PathLookup); n != 1 {
		t.Errorf("%d lookup requests, want one batch", n)
	}
	var body struct{ Addresses []string }
	for _, r := range e.fake.Requests() {
		if r.Path == isfake.PathLookup {
			if err := jsonUnmarshal(r.Body, &body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(body.Addresses) != 3 {
		t.Errorf("batch asked %d addresses, want 3 distinct unknown numbers", len(body.Addresses))
	}
	// Now all cached.
	again := e.dir.LookupMany(context.Background(), []string{carolNum, daveNum, erinNum})
	for i, r := range again {
		if !r.FromCache || r.Err != nil {
			t.Errorf("second batch [%d]: %+v", i, r)
		}
	}
	if n := e.count("POST", isfake.PathLookup); n != 1 {
		t.Errorf("%d lookup requests after cached batch", n)
	}
}

func TestNormalize(t *testing.T) {
	d, err := directory.New(directory.Config{DefaultRegion: "gb"}, directory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in, want string
		bad            bool
	}{
		{name: "E.164 stays", in: "+447700900123", want: "+447700900123"},
		{name: "national form in the default region", in: "07700 900123", want: "+447700900123"},
		{name: "trunk zero after country code", in: "+44 07700 900123", want: "+447700900123"},
		{name: "other country", in: "+1 (555) 123-0003", want: "+15551230003"},
		{name: "tel URI", in: "tel:+447700900123", want: "+447700900123"},
		{name: "too short", in: "123", bad: true},
		{name: "text", in: "BANK", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := d.Normalize(tc.in)
			if tc.bad {
				if !errors.Is(err, directory.ErrBadNumber) {
					t.Errorf("Normalize(%q) = %q, %v; want ErrBadNumber", tc.in, got, err)
				}
				if err != nil && len(tc.in) > 4 && strings.Contains(err.Error(), tc.in) {
					t.Errorf("error shows the input unmasked: %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Normalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}
