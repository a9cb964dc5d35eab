package directory_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/directory"
	"github.com/bubbled/bubbled/connectors/directory/isfake"
	"github.com/bubbled/bubbled/fallback/fallbacktest"
)

// Test identities. The bridge bot registers with the identity server.
const (
	bot       = id.UserID("@bubbledbot:hs.test")
	openIDTok = "openid-for-bot"

	aliceNum = "+15551230001" // a line on this bridge
	alice    = id.UserID("@alice:hs.test")
	bobNum   = "+15551230002" // in the static table
	bob      = id.UserID("@bob:hs.test")
	carolNum = "+15551230003" // bound on the identity server
	carol    = id.UserID("@carol:other.test")
	daveNum  = "+15551230004" // nowhere
	erinNum  = "+447700900123"
	erin     = id.UserID("@erin:other.test")
)

// newClock returns the one fake clock, which moves only when told.
func newClock() *fallbacktest.Clock {
	return fallbacktest.NewClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
}

// openID is the bridge's OpenIDTokenSource: a homeserver that issues the same token.
type openID struct {
	calls atomic.Int32
	err   error
}

func (o *openID) OpenIDToken(context.Context) (*mautrix.RespOpenIDToken, error) {
	o.calls.Add(1)
	if o.err != nil {
		return nil, o.err
	}
	return &mautrix.RespOpenIDToken{AccessToken: openIDTok, TokenType: "Bearer", MatrixServerName: "hs.test", ExpiresIn: 3600}, nil
}

// env is a Directory wired to a fake identity server, a fake clock and an observed logger.
type env struct {
	t     *testing.T
	fake  *isfake.Server
	ts    *httptest.Server
	clock *fallbacktest.Clock
	oid   *openID
	dir   *directory.Directory
	logs  *observer.ObservedLogs
}

// setup builds an env. The identity server binds carol and erin, uses pepper "pepper1" and has
// no terms unless fakeOpts says otherwise; mod may change the config before New.
func setup(t *testing.T, fakeOpts isfake.Options, mod func(*directory.Config)) *env {
	t.Helper()
	if fakeOpts.Verifier == nil {
		fakeOpts.Verifier = isfake.TokenTable{openIDTok: bot}
	}
	if fakeOpts.Pepper == "" {
		fakeOpts.Pepper = "pepper1"
	}
	e := &env{t: t, fake: isfake.New(fakeOpts), clock: newClock(), oid: &openID{}}
	e.fake.Bind(carolNum, carol)
	e.fake.Bind(erinNum, erin)
	e.ts = httptest.NewServer(e.fake)
	t.Cleanup(e.ts.Close)
	cfg := directory.Config{
		DefaultRegion:  "US",
		Static:         map[string]string{bobNum: string(bob)},
		IdentityServer: directory.IdentityServerConfig{URL: e.ts.URL},
	}
	if mod != nil {
		mod(&cfg)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs = logs
	dir, err := directory.New(cfg, directory.Options{Log: zap.New(core), Clock: e.clock, OpenID: e.oid})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := dir.SetLocal(map[string]id.UserID{aliceNum: alice}); err != nil {
		t.Fatalf("SetLocal: %v", err)
	}
	e.dir = dir
	return e
}

// lookup looks number up with a 5-second bound.
func (e *env) lookup(number string) (directory.Result, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return e.dir.Lookup(ctx, number)
}

// mustFind looks number up and fails the test unless it resolves to want from src.
func (e *env) mustFind(number string, want id.UserID, src directory.Source) directory.Result {
	e.t.Helper()
	r, err := e.lookup(number)
	if err != nil {
		e.t.Fatalf("Lookup(%s): %v", number, err)
	}
	if r.MXID != want || r.Source != src {
		e.t.Fatalf("Lookup(%s) = %q from %q, want %q from %q", number, r.MXID, r.Source, want, src)
	}
	return r
}

// count returns how many requests the fake got for method and path.
func (e *env) count(method, path string) int { return e.fake.Count(method, path) }

// matrixErr answers with a Matrix error.
func matrixErr(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"errcode":"` + code + `","error":"test says no"}`))
}

// raw answers with a body as is.
func raw(w http.ResponseWriter, status int, contentType, body string) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// on returns an intercept that answers requests for path with f and lets others through.
func on(path string, f func(w http.ResponseWriter, r *http.Request)) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != path {
			return false
		}
		f(w, r)
		return true
	}
}

var errHomeserverDown = errors.New("homeserver unreachable")

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func strconvItoa(i int) string { return strconv.Itoa(i) }
