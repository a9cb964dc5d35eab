package directory_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/directory"
	"github.com/bubbled/bubbled/connectors/directory/isfake"
)

func TestIdentityServerHappyPath(t *testing.T) {
	e := setup(t, isfake.Options{}, nil)
	e.mustFind(carolNum, carol, directory.SourceIdentityServer)
	e.mustFind(daveNum, "", directory.SourceIdentityServer)

	reqs := e.fake.Requests()
	var paths []string
	for _, r := range reqs {
		paths = append(paths, r.Method+" "+r.Path)
	}
	wantPaths := []string{
		"POST " + isfake.PathRegister,
		"GET " + isfake.PathHashDetails,
		"POST " + isfake.PathLookup,
		"POST " + isfake.PathLookup, // token and pepper are reused
	}
	if !slices.Equal(paths, wantPaths) {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(paths, "\n"), strings.Join(wantPaths, "\n"))
	}
	var reg struct {
		AccessToken      string `json:"access_token"`
		TokenType        string `json:"token_type"`
		MatrixServerName string `json:"matrix_server_name"`
	}
	if err := jsonUnmarshal(reqs[0].Body, &reg); err != nil {
		t.Fatal(err)
	}
	if reg.AccessToken != openIDTok || reg.TokenType != "Bearer" || reg.MatrixServerName != "hs.test" {
		t.Errorf("register body %s", reqs[0].Body)
	}
	if reqs[0].Authorization != "" {
		t.Error("register sent an Authorization header")
	}
	for _, r := range reqs[1:] {
		if !strings.HasPrefix(r.Authorization, "Bearer ") || len(r.Authorization) < 20 {
			t.Errorf("%s %s: Authorization %q", r.Method, r.Path, r.Authorization)
		}
		if r.Query.Has("access_token") {
			t.Errorf("%s %s: token in the query string", r.Method, r.Path)
		}
	}
	for i, num := range []string{carolNum, daveNum} {
		var body struct {
			Algorithm string   `json:"algorithm"`
			Pepper    string   `json:"pepper"`
			Addresses []string `json:"addresses"`
		}
		r := reqs[2+i]
		if err := jsonUnmarshal(r.Body, &body); err != nil {
			t.Fatal(err)
		}
		want := directory.HashMSISDN(num, "pepper1")
		if body.Algorithm != "sha256" || body.Pepper != "pepper1" || !slices.Equal(body.Addresses, []string{want}) {
			t.Errorf("lookup %d body %s, want sha256 / pepper1 / [%s]", i, r.Body, want)
		}
		if strings.Contains(string(r.Body), strings.TrimPrefix(num, "+")) {
			t.Errorf("lookup %d sent the number in clear", i)
		}
		if r.ContentType != "application/json" {
			t.Errorf("lookup %d Content-Type %q", i, r.ContentType)
		}
	}
	if e.oid.calls.Load() != 1 {
		t.Errorf("%d OpenID tokens requested, want 1", e.oid.calls.Load())
	}
}

// recovery cases: the server demands something and the client fixes it itself, at most once.
func TestIdentityServerRecovery(t *testing.T) {
	const (
		privEN = "https://is.test/privacy-1.2-en.html"
		privFR = "https://is.test/privacy-1.2-fr.html"
		tosEN  = "https://is.test/tos-2.0-en.html"
		tos3   = "https://is.test/tos-3.0-en.html"
	)
	privacy := isfake.Policy{ID: "privacy_policy", Version: "1.2", Docs: []isfake.PolicyDoc{
		{Lang: "en", Name: "Privacy Policy", URL: privEN}, {Lang: "fr", Name: "Politique de confidentialité", URL: privFR},
	}}
	tos := isfake.Policy{ID: "terms_of_service", Version: "2.0", Docs: []isfake.PolicyDoc{{Lang: "en", Name: "Terms of Service", URL: tosEN}}}
	accept := func(urls ...string) func(*directory.Config) {
		return func(c *directory.Config) { c.IdentityServer.AcceptedTerms = urls }
	}
	type counts struct{ register, hashDetails, lookup, postTerms int }
	tests := []struct {
		name     string
		fakeOpts isfake.Options
		mod      func(*directory.Config)
		// before runs after a first successful lookup of erin (when warm) and before the
		// lookup of carol that the case checks.
		warm    bool
		before  func(e *env)
		want    id.UserID
		wantErr []string // substrings; nil means success
		errIs   error
		counts  counts // totals over the whole case
		check   func(t *testing.T, e *env)
	}{
		{
			name: "pepper rotated: refetch hash_details once and retry", warm: true,
			before: func(e *env) { e.fake.RotatePepper() },
			want:   carol, counts: counts{register: 1, hashDetails: 2, lookup: 3},
			check: func(t *testing.T, e *env) {
				var last struct{ Pepper string }
				reqs := e.fake.Requests()
				if err := jsonUnmarshal(reqs[len(reqs)-1].Body, &last); err != nil {
					t.Fatal(err)
				}
				if last.Pepper != e.fake.Pepper() {
					t.Errorf("retry used pepper %q, want the new %q", last.Pepper, e.fake.Pepper())
				}
			},
		},
		{
			name: "pepper always invalid: one refetch then an error", warm: true,
			before: func(e *env) {
				e.fake.SetIntercept(on(isfake.PathLookup, func(w http.ResponseWriter, _ *http.Request) {
					matrixErr(w, http.StatusBadRequest, "M_INVALID_PEPPER")
				}))
			},
			wantErr: []string{"M_INVALID_PEPPER", "rejects the pepper"}, errIs: directory.ErrIdentityServer,
			counts: counts{register: 1, hashDetails: 2, lookup: 3},
		},
		{
			name: "token expired: register again once and retry", warm: true,
			before: func(e *env) { e.fake.ExpireTokens() },
			want:   carol, counts: counts{register: 2, hashDetails: 1, lookup: 3},
			check: func(t *testing.T, e *env) {
				if e.oid.calls.Load() != 2 {
					t.Errorf("%d OpenID tokens requested, want a fresh one per registration (2)", e.oid.calls.Load())
				}
			},
		},
		{
			name: "401 on every lookup: one re-registration then an error", warm: true,
			before: func(e *env) {
				e.fake.SetIntercept(on(isfake.PathLookup, func(w http.ResponseWriter, _ *http.Request) {
					matrixErr(w, http.StatusUnauthorized, "M_UNAUTHORIZED")
				}))
			},
			wantErr: []string{"HTTP 401", "M_UNAUTHORIZED"}, errIs: directory.ErrIdentityServer,
			counts: counts{register: 2, hashDetails: 1, lookup: 3},
		},
		{
			name: "401 on hash_details is also recovered", warm: false,
			before: func(e *env) {
				var once sync.Once
				e.fake.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
					if r.URL.Path != isfake.PathHashDetails {
						return false
					}
					first := false
					once.Do(func() { first = true })
					if first {
						matrixErr(w, http.StatusUnauthorized, "M_UNAUTHORIZED")
					}
					return first
				})
			},
			want: carol, counts: counts{register: 2, hashDetails: 2, lookup: 1},
		},
		{
			name:     "terms not accepted: clear error, nothing signed",
			fakeOpts: isfake.Options{Policies: []isfake.Policy{privacy, tos}},
			wantErr:  []string{privEN, privFR, tosEN, `"Privacy Policy" version 1.2`, "directory.identity_server.accepted_terms"},
			errIs:    directory.ErrTermsNotAccepted,
			counts:   counts{register: 1, hashDetails: 1},
		},
		{
			name:     "terms accepted in config: signed, then looked up",
			fakeOpts: isfake.Options{Policies: []isfake.Policy{privacy, tos}},
			mod:      accept(privEN, tosEN, "https://elsewhere.test/unrelated"),
			want:     carol, counts: counts{register: 1, hashDetails: 2, lookup: 1, postTerms: 1},
			check: func(t *testing.T, e *env) {
				if got, want := e.fake.Accepted(bot), []string{privEN, tosEN}; !slices.Equal(got, want) {
					t.Errorf("server recorded acceptance of %v, want %v", got, want)
				}
				for _, r := range e.fake.Requests() {
					if r.Method == "POST" && r.Path == isfake.PathTerms && strings.Contains(string(r.Body), "elsewhere") {
						t.Errorf("sent an accepted URL the server did not ask for: %s", r.Body)
					}
				}
			},
		},
		{
			name:     "terms accepted through another language's URL",
			fakeOpts: isfake.Options{Policies: []isfake.Policy{privacy}},
			mod:      accept(privFR),
			want:     carol, counts: counts{register: 1, hashDetails: 2, lookup: 1, postTerms: 1},
		},
		{
			name:     "terms half accepted: error names only the missing policy",
			fakeOpts: isfake.Options{Policies: []isfake.Policy{privacy, tos}},
			mod:      accept(privEN),
			wantErr:  []string{tosEN, `"Terms of Service" version 2.0`}, errIs: directory.ErrTermsNotAccepted,
			counts: counts{register: 1, hashDetails: 1},
			check: func(t *testing.T, e *env) {
				_, err := e.lookup(carolNum)
				if err != nil && strings.Contains(err.Error(), privFR) {
					t.Errorf("error names the accepted policy: %v", err)
				}
			},
		},
		{
			name: "terms updated after signing: new version must be accepted", warm: true,
			fakeOpts: isfake.Options{Policies: []isfake.Policy{tos}},
			mod:      accept(tosEN),
			before: func(e *env) {
				e.fake.SetPolicies([]isfake.Policy{{ID: "terms_of_service", Version: "3.0", Docs: []isfake.PolicyDoc{{Lang: "en", Name: "Terms of Service", URL: tos3}}}})
			},
			wantErr: []string{tos3, "version 3.0"}, errIs: directory.ErrTermsNotAccepted,
			counts: counts{register: 1, hashDetails: 2, lookup: 2, postTerms: 1},
		},
		{
			name: "terms demanded but none listed",
			before: func(e *env) {
				e.fake.SetIntercept(on(isfake.PathHashDetails, func(w http.ResponseWriter, _ *http.Request) {
					matrixErr(w, http.StatusForbidden, "M_TERMS_NOT_SIGNED")
				}))
			},
			wantErr: []string{"lists none"}, errIs: directory.ErrIdentityServer,
			counts: counts{register: 1, hashDetails: 1},
		},
		{
			name:     "terms still demanded after signing: one attempt only",
			fakeOpts: isfake.Options{Policies: []isfake.Policy{tos}},
			mod:      accept(tosEN),
			before: func(e *env) {
				e.fake.SetIntercept(on(isfake.PathHashDetails, func(w http.ResponseWriter, _ *http.Request) {
					matrixErr(w, http.StatusForbidden, "M_TERMS_NOT_SIGNED")
				}))
			},
			wantErr: []string{"M_TERMS_NOT_SIGNED", "still demands terms"}, errIs: directory.ErrIdentityServer,
			counts: counts{register: 1, hashDetails: 2, postTerms: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, tc.fakeOpts, tc.mod)
			if tc.warm {
				e.mustFind(erinNum, erin, directory.SourceIdentityServer)
			}
			if tc.before != nil {
				tc.before(e)
			}
			r, err := e.lookup(carolNum)
			if tc.wantErr == nil {
				if err != nil || r.MXID != tc.want {
					t.Fatalf("Lookup = %q, %v; want %q", r.MXID, err, tc.want)
				}
			} else {
				if err == nil {
					t.Fatalf("Lookup = %+v, want an error", r)
				}
				if r.Found() {
					t.Errorf("error came with a Matrix ID %q", r.MXID)
				}
				if !errors.Is(err, tc.errIs) || !errors.Is(err, directory.ErrIdentityServer) {
					t.Errorf("error %v is not %v", err, tc.errIs)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error does not mention %q:\n%v", w, err)
					}
				}
			}
			got := counts{
				register:    e.count("POST", isfake.PathRegister),
				hashDetails: e.count("GET", isfake.PathHashDetails),
				lookup:      e.count("POST", isfake.PathLookup),
				postTerms:   e.count("POST", isfake.PathTerms),
			}
			if got != tc.counts {
				t.Errorf("requests %+v, want %+v", got, tc.counts)
			}
			if tc.check != nil {
				tc.check(t, e)
			}
		})
	}
}

// failure cases: the identity server is down, slow or talks garbage. Every one must give a
// clear ErrIdentityServer error, no Matrix ID, be cached for ErrorTTL only, and never carry
// the number or its hash.
func TestIdentityServerFailures(t *testing.T) {
	hang := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	tests := []struct {
		name    string
		mod     func(*directory.Config)
		before  func(e *env)
		ctxWait time.Duration // lookup deadline; default 5s
		want    []string
		is      error
	}{
		{name: "server down", before: func(e *env) { e.ts.Close() },
			want: []string{"connection refused", "check that the identity server is up"}},
		{name: "slow: caller's deadline", ctxWait: 200 * time.Millisecond,
			before: func(e *env) { e.fake.SetIntercept(on(isfake.PathLookup, hang)) },
			want:   []string{"did not answer in time"}, is: context.DeadlineExceeded},
		{name: "slow: configured request timeout",
			mod:    func(c *directory.Config) { c.IdentityServer.Timeout = 200 * time.Millisecond },
			before: func(e *env) { e.fake.SetIntercept(on(isfake.PathHashDetails, hang)) },
			want:   []string{"GET /_matrix/identity/v2/hash_details", "did not answer in time"}, is: context.DeadlineExceeded},
		{name: "HTML error page", before: func(e *env) {
			e.fake.SetIntercept(on(isfake.PathLookup, func(w http.ResponseWriter, _ *http.Request) {
				raw(w, http.StatusBadGateway, "text/html", "<html>502 Bad Gateway</html>")
			}))
		}, want: []string{"HTTP 502 without a Matrix error body"}},
		{name: "register refused", before: func(e *env) {
			e.fake.SetIntercept(on(isfake.PathRegister, func(w http.ResponseWriter, _ *http.Request) {
				matrixErr(w, http.StatusUnauthorized, "M_UNAUTHORIZED")
			}))
		}, want: []string{"register", "openid/userinfo", "federation"}},
		{name: "register answer without token", before: func(e *env) {
			e.fake.SetIntercept(on(isfake.PathRegister, func(w http.ResponseWriter, _ *http.Request) {
				raw(w, http.StatusOK, "application/json", `{"nothing":1}`)
			}))
		}, want: []string{"register", "no token"}},
		{name: "homeserver gives no OpenID token", before: func(e *env) { e.oid.err = errHomeserverDown },
			want: []string{"OpenID token", "homeserver unreachable"}, is: errHomeserverDown},
		{name: "hash_details is not JSON", before: func(e *env) {
			e.fake.SetIntercept(on(isfake.PathHashDetails, func(w http.ResponseWriter, _ *http.Request) {
				raw(w, http.StatusOK, "text/plain", "pepper=abc")
			}))
		}, want: []string{"hash_details", "not the expected JSON", "text/plain", "does not follow the Identity Service API v2"}},
		{name: "hash_details without pepper", before: func(e *env) {
			e.fake.SetIntercept(on(isfake.PathHashDetails, func(w http.ResponseWriter, _ *http.Request) {
				raw(w, http.StatusOK, "application/json", `{"algorithms":["sha256"]}`)
			}))
		}, want: []string{"no lookup_pepper"}},
		{name: "hash_details without sha256", before: func(e *env) { e.fake.SetAlgorithms([]string{"none"}) },
			want: []string{`["none"]`, "not sha256"}},
		{name: "hash_details with wrong types", before: func(e *env) {
			e.fake.SetIntercept(on(isfake.PathHashDetails, func(w http.ResponseWriter, _ *http.Request) {
				raw(w, http.StatusOK, "application/json", `{"lookup_pepper":7,"algorithms":"sha256"}`)
			}))
		}, want: []string{"not the expected JSON"}},
		{name: "lookup without mappings", before: func(e *env) {
			e.fake.SetIntercept(on(isfake.PathLookup, func(w http.ResponseWriter, _ *http.Request) {
				raw(w, http.StatusOK, "application/json", `{}`)
			}))
		}, want: []string{"no mappings", "does not follow the Identity Service API v2"}},
		{name: "terms with a policy without URL", before: func(e *env) {
			e.fake.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
				switch r.URL.Path {
				case isfake.PathHashDetails:
					matrixErr(w, http.StatusForbidden, "M_TERMS_NOT_SIGNED")
				case isfake.PathTerms:
					raw(w, http.StatusOK, "application/json", `{"policies":{"tos":{"version":"1","en":{"name":"ToS"}}}}`)
				default:
					return false
				}
				return true
			})
		}, want: []string{"get terms", `policy "tos" language "en" has no url`}},
		{name: "lookup truncated JSON", before: func(e *env) {
			e.fake.SetIntercept(on(isfake.PathLookup, func(w http.ResponseWriter, _ *http.Request) {
				raw(w, http.StatusOK, "application/json", `{"mappings":{"`)
			}))
		}, want: []string{"not the expected JSON"}},
		{name: "lookup maps to something that is not a user ID", before: func(e *env) {
			e.fake.SetIntercept(on(isfake.PathLookup, func(w http.ResponseWriter, _ *http.Request) {
				h := directory.HashMSISDN(carolNum, "pepper1")
				raw(w, http.StatusOK, "application/json", `{"mappings":{"`+h+`":"carol"}}`)
			}))
		}, want: []string{`"carol"`, "not a Matrix user ID"}},
		{name: "server error echoes the request", before: func(e *env) {
			e.fake.SetIntercept(on(isfake.PathLookup, func(w http.ResponseWriter, _ *http.Request) {
				h := directory.HashMSISDN(carolNum, "pepper1")
				raw(w, http.StatusInternalServerError, "application/json", `{"errcode":"M_UNKNOWN","error":"cannot look up `+h+` for 15551230003"}`)
			}))
		}, want: []string{"M_UNKNOWN", "cannot look up <redacted> for <redacted>"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, isfake.Options{}, tc.mod)
			tc.before(e)
			wait := tc.ctxWait
			if wait == 0 {
				wait = 5 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			start := time.Now()
			r, err := e.dir.Lookup(ctx, carolNum)
			cancel()
			if time.Since(start) > 3*time.Second {
				t.Errorf("lookup took %v", time.Since(start))
			}
			if err == nil {
				t.Fatalf("Lookup = %+v, want an error", r)
			}
			if r.Found() || r.Source != directory.SourceIdentityServer {
				t.Errorf("error came with %+v", r)
			}
			if !errors.Is(err, directory.ErrIdentityServer) {
				t.Errorf("error does not wrap ErrIdentityServer: %v", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error does not wrap %v: %v", tc.is, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
			for _, secret := range []string{carolNum, strings.TrimPrefix(carolNum, "+"), directory.HashMSISDN(carolNum, "pepper1"), openIDTok} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error contains %q: %v", secret, err)
				}
			}

			// The failure is cached for ErrorTTL (1 minute), not NotFoundTTL.
			before := len(e.fake.Requests())
			e.clock.Advance(59 * time.Second)
			r2, err2 := e.lookup(carolNum)
			if !r2.FromCache || err2 == nil || err2.Error() != err.Error() || len(e.fake.Requests()) != before {
				t.Errorf("within ErrorTTL: %+v, %v, %d new requests; want the cached error", r2, err2, len(e.fake.Requests())-before)
			}
			e.clock.Advance(time.Second)
			e.fake.SetIntercept(nil)
			e.fake.SetAlgorithms([]string{"sha256"})
			e.oid.err = nil
			_, _ = e.lookup(carolNum)
			if len(e.fake.Requests()) == before && tc.name != "server down" {
				t.Error("after ErrorTTL the identity server was not asked again")
			}
		})
	}
}

func TestIdentityServerRecoversAfterErrorTTL(t *testing.T) {
	e := setup(t, isfake.Options{}, func(c *directory.Config) { c.ErrorTTL = 10 * time.Second })
	e.fake.SetIntercept(on(isfake.PathLookup, func(w http.ResponseWriter, _ *http.Request) {
		raw(w, http.StatusServiceUnavailable, "text/plain", "busy")
	}))
	if _, err := e.lookup(carolNum); err == nil {
		t.Fatal("no error from a busy server")
	}
	e.fake.SetIntercept(nil)
	e.clock.Advance(9 * time.Second)
	if _, err := e.lookup(carolNum); err == nil {
		t.Fatal("cached error forgotten before ErrorTTL")
	}
	e.clock.Advance(time.Second)
	r := e.mustFind(carolNum, carol, directory.SourceIdentityServer)
	if r.FromCache {
		t.Error("answer after ErrorTTL came from the cache")
	}
}

func TestCancelledLookupIsNotCached(t *testing.T) {
	e := setup(t, isfake.Options{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	e.fake.SetIntercept(on(isfake.PathLookup, func(w http.ResponseWriter, r *http.Request) {
		cancel()
		<-r.Context().Done()
	}))
	_, err := e.dir.Lookup(ctx, carolNum)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	e.fake.SetIntercept(nil)
	r := e.mustFind(carolNum, carol, directory.SourceIdentityServer)
	if r.FromCache {
		t.Error("the cancelled lookup was cached")
	}
}

func TestConcurrentLookupsShareOneRequest(t *testing.T) {
	e := setup(t, isfake.Options{}, nil)
	e.mustFind(erinNum, erin, directory.SourceIdentityServer) // registered, pepper known
	release := make(chan struct{})
	arrived := make(chan struct{}, 16)
	e.fake.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == isfake.PathLookup {
			arrived <- struct{}{}
			<-release
		}
		return false
	})
	const n = 8
	var wg sync.WaitGroup
	results := make([]directory.Result, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			results[i], errs[i] = e.lookup(carolNum)
		})
	}
	<-arrived
	time.Sleep(50 * time.Millisecond) // let the others queue behind the first
	close(release)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || results[i].MXID != carol {
			t.Errorf("lookup %d: %+v, %v", i, results[i], errs[i])
		}
	}
	if got := e.count("POST", isfake.PathLookup); got != 2 {
		t.Errorf("%d lookup requests, want 2 (erin, then one shared for carol)", got)
	}
}

func TestLargeBatchIsSplit(t *testing.T) {
	e := setup(t, isfake.Options{}, nil)
	var numbers []string
	for i := range 250 {
		numbers = append(numbers, "+1555200"+pad4(i))
	}
	numbers = append(numbers, carolNum)
	res := e.dir.LookupMany(context.Background(), numbers)
	if res[len(res)-1].MXID != carol {
		t.Errorf("carol in a large batch: %+v", res[len(res)-1])
	}
	if got := e.count("POST", isfake.PathLookup); got != 3 {
		t.Errorf("%d lookup requests for 251 numbers, want 3 (100 per request)", got)
	}
}

func pad4(i int) string {
	s := "0000" + strconvItoa(i)
	return s[len(s)-4:]
}
