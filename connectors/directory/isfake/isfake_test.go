package isfake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/directory/isfake"
)

// TestHashSpecVectors checks Hash against the examples of the Identity Service API spec
// ("Association lookup", algorithm sha256, pepper "matrixrocks").
func TestHashSpecVectors(t *testing.T) {
	tests := []struct {
		name, address, medium, want string
	}{
		{"msisdn", "18005552067", "msisdn", "nlo35_T5fzSGZzJApqu8lgIudJvmOQtDaHtr-I4rU7I"},
		{"email alice", "alice@example.com", "email", "4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc"},
		{"email bob", "bob@example.com", "email", "LJwSazmv46n0hlMlsb_iYxI0_HXEqy_yj6Jm636cdT8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := isfake.Hash(tc.address, tc.medium, "matrixrocks"); got != tc.want {
				t.Errorf("Hash(%q, %q, matrixrocks) = %s, want %s", tc.address, tc.medium, got, tc.want)
			}
		})
	}
}

const (
	bot       = id.UserID("@bot:hs.test")
	openIDTok = "openid-token-1"
	bobNumber = "+15551230001"
	bob       = id.UserID("@bob:hs.test")
)

var (
	privacy = isfake.Policy{ID: "privacy_policy", Version: "1.2", Docs: []isfake.PolicyDoc{
		{Lang: "en", Name: "Privacy Policy", URL: "https://is.test/privacy-1.2-en.html"},
		{Lang: "fr", Name: "Politique de confidentialité", URL: "https://is.test/privacy-1.2-fr.html"},
	}}
	tos = isfake.Policy{ID: "terms_of_service", Version: "2.0", Docs: []isfake.PolicyDoc{
		{Lang: "en", Name: "Terms of Service", URL: "https://is.test/tos-2.0-en.html"},
	}}
)

// client speaks raw HTTP to the fake, so that these tests check the fake against the spec
// independently of the directory's client.
type client struct {
	t    *testing.T
	base string
}

type answer struct {
	status int
	body   map[string]any
}

func (a answer) code() string { s, _ := a.body["errcode"].(string); return s }

func (c client) do(method, path, token string, body any) answer {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		c.t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		c.t.Fatalf("%s %s: body is not a JSON object: %v", method, path, err)
	}
	return answer{resp.StatusCode, m}
}

func (c client) register(token string) string {
	c.t.Helper()
	a := c.do(http.MethodPost, isfake.PathRegister, "", map[string]any{
		"access_token": token, "token_type": "Bearer", "matrix_server_name": "hs.test", "expires_in": 3600,
	})
	if a.status != http.StatusOK {
		c.t.Fatalf("register: HTTP %d %v", a.status, a.body)
	}
	tok, _ := a.body["token"].(string)
	if tok == "" {
		c.t.Fatalf("register: no token in %v", a.body)
	}
	return tok
}

func (c client) lookup(token, pepper string, addresses ...string) answer {
	c.t.Helper()
	return c.do(http.MethodPost, isfake.PathLookup, token, map[string]any{
		"algorithm": "sha256", "pepper": pepper, "addresses": addresses,
	})
}

func newFake(t *testing.T, opts isfake.Options) (*isfake.Server, client) {
	t.Helper()
	if opts.Verifier == nil {
		opts.Verifier = isfake.TokenTable{openIDTok: bot}
	}
	fake := isfake.New(opts)
	ts := httptest.NewServer(fake)
	t.Cleanup(ts.Close)
	return fake, client{t, ts.URL}
}

func TestProtocol(t *testing.T) {
	bobHash := func(pepper string) string { return isfake.Hash(strings.TrimPrefix(bobNumber, "+"), "msisdn", pepper) }
	tests := []struct {
		name string
		opts isfake.Options
		run  func(t *testing.T, fake *isfake.Server, c client)
	}{
		{"unknown path is 404 M_UNRECOGNIZED", isfake.Options{}, func(t *testing.T, _ *isfake.Server, c client) {
			a := c.do(http.MethodGet, "/_matrix/identity/v2/nope", "", nil)
			if a.status != http.StatusNotFound || a.code() != "M_UNRECOGNIZED" {
				t.Errorf("got %d %s", a.status, a.code())
			}
		}},
		{"wrong method is 405 M_UNRECOGNIZED", isfake.Options{}, func(t *testing.T, _ *isfake.Server, c client) {
			a := c.do(http.MethodPost, isfake.PathHashDetails, "", map[string]any{})
			if a.status != http.StatusMethodNotAllowed || a.code() != "M_UNRECOGNIZED" {
				t.Errorf("got %d %s", a.status, a.code())
			}
		}},
		{"status and versions need no token", isfake.Options{}, func(t *testing.T, _ *isfake.Server, c client) {
			if a := c.do(http.MethodGet, isfake.PathStatus, "", nil); a.status != http.StatusOK {
				t.Errorf("status: %d", a.status)
			}
			if a := c.do(http.MethodGet, isfake.PathVersions, "", nil); a.status != http.StatusOK || a.body["versions"] == nil {
				t.Errorf("versions: %d %v", a.status, a.body)
			}
		}},
		{"hash_details without token is 401", isfake.Options{}, func(t *testing.T, _ *isfake.Server, c client) {
			a := c.do(http.MethodGet, isfake.PathHashDetails, "", nil)
			if a.status != http.StatusUnauthorized || a.code() != "M_UNAUTHORIZED" {
				t.Errorf("got %d %s", a.status, a.code())
			}
		}},
		{"unknown token is 401", isfake.Options{}, func(t *testing.T, _ *isfake.Server, c client) {
			a := c.do(http.MethodGet, isfake.PathHashDetails, "made-up", nil)
			if a.status != http.StatusUnauthorized || a.code() != "M_UNAUTHORIZED" {
				t.Errorf("got %d %s", a.status, a.code())
			}
		}},
		{"token in query string is accepted", isfake.Options{}, func(t *testing.T, _ *isfake.Server, c client) {
			tok := c.register(openIDTok)
			a := c.do(http.MethodGet, isfake.PathAccount+"?access_token="+tok, "", nil)
			if a.status != http.StatusOK || a.body["user_id"] != string(bot) {
				t.Errorf("got %d %v", a.status, a.body)
			}
		}},
		{"register refuses an unverifiable OpenID token", isfake.Options{}, func(t *testing.T, _ *isfake.Server, c client) {
			a := c.do(http.MethodPost, isfake.PathRegister, "", map[string]any{"access_token": "forged", "token_type": "Bearer", "matrix_server_name": "hs.test"})
			if a.status != http.StatusUnauthorized || a.code() != "M_UNAUTHORIZED" {
				t.Errorf("got %d %s", a.status, a.code())
			}
		}},
		{"register refuses a token of another server", isfake.Options{}, func(t *testing.T, _ *isfake.Server, c client) {
			a := c.do(http.MethodPost, isfake.PathRegister, "", map[string]any{"access_token": openIDTok, "token_type": "Bearer", "matrix_server_name": "evil.test"})
			if a.status != http.StatusUnauthorized {
				t.Errorf("got %d %s", a.status, a.code())
			}
		}},
		{"register without matrix_server_name is 400", isfake.Options{}, func(t *testing.T, _ *isfake.Server, c client) {
			a := c.do(http.MethodPost, isfake.PathRegister, "", map[string]any{"access_token": openIDTok})
			if a.status != http.StatusBadRequest || a.code() != "M_MISSING_PARAMS" {
				t.Errorf("got %d %s", a.status, a.code())
			}
		}},
		{"hash_details offers the pepper and sha256", isfake.Options{Pepper: "matrixrocks"}, func(t *testing.T, _ *isfake.Server, c client) {
			a := c.do(http.MethodGet, isfake.PathHashDetails, c.register(openIDTok), nil)
			if a.status != http.StatusOK || a.body["lookup_pepper"] != "matrixrocks" {
				t.Fatalf("got %d %v", a.status, a.body)
			}
			algs, _ := a.body["algorithms"].([]any)
			if !slices.Contains(algs, any("sha256")) {
				t.Errorf("algorithms %v lack sha256", algs)
			}
		}},
		{"lookup finds bound numbers only", isfake.Options{Pepper: "p1"}, func(t *testing.T, fake *isfake.Server, c client) {
			fake.Bind(bobNumber, bob)
			other := isfake.Hash("15551230002", "msisdn", "p1")
			a := c.lookup(c.register(openIDTok), "p1", bobHash("p1"), other)
			m, _ := a.body["mappings"].(map[string]any)
			if a.status != http.StatusOK || len(m) != 1 || m[bobHash("p1")] != string(bob) {
				t.Errorf("got %d %v", a.status, a.body)
			}
		}},
		{"the spec's msisdn vector is found", isfake.Options{Pepper: "matrixrocks"}, func(t *testing.T, fake *isfake.Server, c client) {
			fake.Bind("18005552067", bob)
			a := c.lookup(c.register(openIDTok), "matrixrocks", "nlo35_T5fzSGZzJApqu8lgIudJvmOQtDaHtr-I4rU7I")
			m, _ := a.body["mappings"].(map[string]any)
			if m["nlo35_T5fzSGZzJApqu8lgIudJvmOQtDaHtr-I4rU7I"] != string(bob) {
				t.Errorf("got %d %v", a.status, a.body)
			}
		}},
		{"lookup with algorithm none", isfake.Options{Pepper: "p1"}, func(t *testing.T, fake *isfake.Server, c client) {
			fake.Bind(bobNumber, bob)
			a := c.do(http.MethodPost, isfake.PathLookup, c.register(openIDTok), map[string]any{
				"algorithm": "none", "pepper": "p1", "addresses": []string{"15551230001 msisdn"},
			})
			m, _ := a.body["mappings"].(map[string]any)
			if m["15551230001 msisdn"] != string(bob) {
				t.Errorf("got %d %v", a.status, a.body)
			}
		}},
		{"unbound number is not found", isfake.Options{Pepper: "p1"}, func(t *testing.T, fake *isfake.Server, c client) {
			fake.Bind(bobNumber, bob)
			fake.Unbind(bobNumber)
			a := c.lookup(c.register(openIDTok), "p1", bobHash("p1"))
			if m, ok := a.body["mappings"].(map[string]any); !ok || len(m) != 0 {
				t.Errorf("got %d %v", a.status, a.body)
			}
		}},
		{"rotated pepper gives M_INVALID_PEPPER with the new one", isfake.Options{Pepper: "p1"}, func(t *testing.T, fake *isfake.Server, c client) {
			tok := c.register(openIDTok)
			p2 := fake.RotatePepper()
			if p2 == "p1" || fake.Pepper() != p2 {
				t.Fatalf("RotatePepper = %q, Pepper = %q", p2, fake.Pepper())
			}
			a := c.lookup(tok, "p1", bobHash("p1"))
			if a.status != http.StatusBadRequest || a.code() != "M_INVALID_PEPPER" || a.body["lookup_pepper"] != p2 {
				t.Errorf("got %d %v", a.status, a.body)
			}
		}},
		{"unknown algorithm is M_INVALID_PARAM", isfake.Options{Pepper: "p1", Algorithms: []string{"sha256"}}, func(t *testing.T, _ *isfake.Server, c client) {
			a := c.do(http.MethodPost, isfake.PathLookup, c.register(openIDTok), map[string]any{"algorithm": "none", "pepper": "p1", "addresses": []string{}})
			if a.status != http.StatusBadRequest || a.code() != "M_INVALID_PARAM" {
				t.Errorf("got %d %v", a.status, a.body)
			}
		}},
		{"lookup without addresses is M_MISSING_PARAMS", isfake.Options{Pepper: "p1"}, func(t *testing.T, _ *isfake.Server, c client) {
			a := c.do(http.MethodPost, isfake.PathLookup, c.register(openIDTok), map[string]any{"algorithm": "sha256", "pepper": "p1"})
			if a.status != http.StatusBadRequest || a.code() != "M_MISSING_PARAMS" {
				t.Errorf("got %d %v", a.status, a.body)
			}
		}},
		{"expired tokens get 401", isfake.Options{}, func(t *testing.T, fake *isfake.Server, c client) {
			tok := c.register(openIDTok)
			if fake.Tokens() != 1 {
				t.Fatalf("Tokens = %d", fake.Tokens())
			}
			fake.ExpireTokens()
			if a := c.do(http.MethodGet, isfake.PathHashDetails, tok, nil); a.status != http.StatusUnauthorized {
				t.Errorf("got %d", a.status)
			}
		}},
		{"logout ends the token", isfake.Options{}, func(t *testing.T, _ *isfake.Server, c client) {
			tok := c.register(openIDTok)
			if a := c.do(http.MethodPost, isfake.PathLogout, tok, map[string]any{}); a.status != http.StatusOK {
				t.Fatalf("logout: %d", a.status)
			}
			if a := c.do(http.MethodGet, isfake.PathAccount, tok, nil); a.status != http.StatusUnauthorized {
				t.Errorf("after logout: %d", a.status)
			}
		}},
		{"terms block until every policy is accepted", isfake.Options{Policies: []isfake.Policy{privacy, tos}}, func(t *testing.T, fake *isfake.Server, c client) {
			tok := c.register(openIDTok)
			if a := c.do(http.MethodGet, isfake.PathHashDetails, tok, nil); a.status != http.StatusForbidden || a.code() != "M_TERMS_NOT_SIGNED" {
				t.Fatalf("before: %d %s", a.status, a.code())
			}
			terms := c.do(http.MethodGet, isfake.PathTerms, "", nil)
			pol, _ := terms.body["policies"].(map[string]any)
			pp, _ := pol["privacy_policy"].(map[string]any)
			fr, _ := pp["fr"].(map[string]any)
			if pp["version"] != "1.2" || fr["url"] != "https://is.test/privacy-1.2-fr.html" {
				t.Fatalf("terms: %v", terms.body)
			}
			// The French URL accepts the privacy policy; the ToS is still missing.
			c.do(http.MethodPost, isfake.PathTerms, tok, map[string]any{"user_accepts": []string{"https://is.test/privacy-1.2-fr.html", "https://unknown.test/x"}})
			if a := c.do(http.MethodGet, isfake.PathHashDetails, tok, nil); a.code() != "M_TERMS_NOT_SIGNED" {
				t.Fatalf("half accepted: %d %s", a.status, a.code())
			}
			c.do(http.MethodPost, isfake.PathTerms, tok, map[string]any{"user_accepts": []string{"https://is.test/tos-2.0-en.html"}})
			if a := c.do(http.MethodGet, isfake.PathHashDetails, tok, nil); a.status != http.StatusOK {
				t.Errorf("accepted: %d %v", a.status, a.body)
			}
			want := []string{"https://is.test/privacy-1.2-fr.html", "https://is.test/tos-2.0-en.html"}
			if got := fake.Accepted(bot); !slices.Equal(got, want) {
				t.Errorf("Accepted = %v, want %v (unknown URLs ignored)", got, want)
			}
			// A new policy version must be accepted again.
			newTOS := tos
			newTOS.Version = "3.0"
			newTOS.Docs = []isfake.PolicyDoc{{Lang: "en", Name: "Terms of Service", URL: "https://is.test/tos-3.0-en.html"}}
			fake.SetPolicies([]isfake.Policy{privacy, newTOS})
			if a := c.do(http.MethodGet, isfake.PathHashDetails, tok, nil); a.code() != "M_TERMS_NOT_SIGNED" {
				t.Errorf("after new version: %d %s", a.status, a.code())
			}
		}},
		{"POST terms needs a token but not signed terms", isfake.Options{Policies: []isfake.Policy{tos}}, func(t *testing.T, _ *isfake.Server, c client) {
			if a := c.do(http.MethodPost, isfake.PathTerms, "", map[string]any{"user_accepts": []string{}}); a.status != http.StatusUnauthorized {
				t.Errorf("no token: %d", a.status)
			}
			if a := c.do(http.MethodPost, isfake.PathTerms, c.register(openIDTok), map[string]any{"user_accepts": []string{}}); a.status != http.StatusOK {
				t.Errorf("with token: %d %v", a.status, a.body)
			}
		}},
		{"requests are recorded", isfake.Options{Pepper: "p1"}, func(t *testing.T, fake *isfake.Server, c client) {
			tok := c.register(openIDTok)
			c.lookup(tok, "p1", bobHash("p1"))
			reqs := fake.Requests()
			if len(reqs) != 2 || fake.Count(http.MethodPost, isfake.PathLookup) != 1 {
				t.Fatalf("recorded %d requests: %+v", len(reqs), reqs)
			}
			l := reqs[1]
			if l.Authorization != "Bearer "+tok || !bytes.Contains(l.Body, []byte(bobHash("p1"))) {
				t.Errorf("lookup recorded as %+v", l)
			}
			fake.ResetRequests()
			if len(fake.Requests()) != 0 {
				t.Error("ResetRequests kept requests")
			}
		}},
		{"intercept answers instead", isfake.Options{}, func(t *testing.T, fake *isfake.Server, c client) {
			fake.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != isfake.PathStatus {
					return false
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusTeapot)
				_, _ = w.Write([]byte(`{}`))
				return true
			})
			if a := c.do(http.MethodGet, isfake.PathStatus, "", nil); a.status != http.StatusTeapot {
				t.Errorf("got %d", a.status)
			}
			if fake.Count(http.MethodGet, isfake.PathStatus) != 1 {
				t.Error("intercepted request not recorded")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake, c := newFake(t, tc.opts)
			tc.run(t, fake, c)
		})
	}
}

func TestStartServesOnLoopback(t *testing.T) {
	fake := isfake.New(isfake.Options{})
	if fake.URL() != "" {
		t.Errorf("URL before Start = %q", fake.URL())
	}
	if err := fake.Start(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(fake.URL(), "http://127.0.0.1:") {
		t.Errorf("URL = %q", fake.URL())
	}
	if err := fake.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	c := client{t, fake.URL()}
	if a := c.do(http.MethodGet, isfake.PathStatus, "", nil); a.status != http.StatusOK {
		t.Errorf("status: %d", a.status)
	}
	if err := fake.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(fake.URL() + isfake.PathStatus); err == nil {
		t.Error("server still answers after Close")
	}
}

func TestHomeserverVerifier(t *testing.T) {
	var gotQuery string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_matrix/federation/v1/openid/userinfo" {
			http.NotFound(w, r)
			return
		}
		gotQuery = r.URL.Query().Get("access_token")
		w.Header().Set("Content-Type", "application/json")
		switch gotQuery {
		case "good":
			_, _ = w.Write([]byte(`{"sub":"@bot:hs.test"}`))
		case "foreign":
			_, _ = w.Write([]byte(`{"sub":"@bot:other.test"}`))
		default:
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errcode":"M_UNKNOWN_TOKEN","error":"no"}`))
		}
	}))
	defer hs.Close()
	v := isfake.HomeserverVerifier{Homeservers: map[string]string{"hs.test": hs.URL}}
	tests := []struct {
		name, token, server string
		want                id.UserID
		wantErr             string
	}{
		{"valid token", "good", "hs.test", bot, ""},
		{"rejected token", "bad", "hs.test", "", "HTTP 401"},
		{"user of another server", "foreign", "hs.test", "", "another server"},
		{"unknown homeserver", "good", "nowhere.test", "", "unknown homeserver"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.VerifyOpenID(context.Background(), isfake.OpenIDToken{AccessToken: tc.token, MatrixServerName: tc.server, TokenType: "Bearer"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %s, %v; want %s", got, err, tc.want)
			}
			if gotQuery != tc.token {
				t.Errorf("homeserver got access_token %q", gotQuery)
			}
		})
	}
}
