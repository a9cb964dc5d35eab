// Package isfake is an in-repo Matrix identity server (Identity Service API v2) for tests and
// the no-hardware trial. It implements what a client that looks up phone numbers meets:
//
//   - POST /_matrix/identity/v2/account/register: exchanges a homeserver OpenID token for an
//     identity-server token after asking a Verifier (by default the homeserver's federation
//     endpoint GET /_matrix/federation/v1/openid/userinfo, as sydent does);
//   - GET /_matrix/identity/v2/account, POST /_matrix/identity/v2/account/logout;
//   - GET and POST /_matrix/identity/v2/terms: policies with per-language URLs; every
//     authenticated endpoint but POST /terms answers 403 M_TERMS_NOT_SIGNED until the
//     account has accepted one URL of each current policy;
//   - GET /_matrix/identity/v2/hash_details and POST /_matrix/identity/v2/lookup with the
//     "sha256" and "none" algorithms over a table of bound phone numbers, 400
//     M_INVALID_PEPPER for a stale pepper and M_INVALID_PARAM for an unknown algorithm;
//   - GET /_matrix/identity/v2 and GET /_matrix/identity/versions.
//
// Missing or unknown tokens get 401 M_UNAUTHORIZED. Test controls rotate the pepper, bind
// numbers, expire tokens, change policies, inject faults (SetIntercept) and read the recorded
// requests. A Server is an http.Handler, so httptest.NewServer(isfake.New(opts)) works;
// Start serves it on 127.0.0.1 by itself.
package isfake

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"
)

// API paths the fake serves.
const (
	PathVersions    = "/_matrix/identity/versions"
	PathStatus      = "/_matrix/identity/v2"
	PathRegister    = "/_matrix/identity/v2/account/register"
	PathAccount     = "/_matrix/identity/v2/account"
	PathLogout      = "/_matrix/identity/v2/account/logout"
	PathTerms       = "/_matrix/identity/v2/terms"
	PathHashDetails = "/_matrix/identity/v2/hash_details"
	PathLookup      = "/_matrix/identity/v2/lookup"
)

// Policy is one policy of GET /terms, e.g. a privacy policy in English and French.
type Policy struct {
	// ID is the policy's key in the "policies" object, e.g. "privacy_policy".
	ID string
	// Version is the policy version, e.g. "1.2".
	Version string
	// Docs are the policy's languages; accepting any one URL accepts the policy.
	Docs []PolicyDoc
}

// PolicyDoc is a policy in one language.
type PolicyDoc struct {
	Lang, Name, URL string
}

// OpenIDToken is the body of POST /account/register: what a homeserver's
// /openid/request_token returned.
type OpenIDToken struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	MatrixServerName string `json:"matrix_server_name"`
	ExpiresIn        int64  `json:"expires_in"`
}

// Verifier checks an OpenID token and returns the Matrix user it belongs to.
type Verifier interface {
	VerifyOpenID(ctx context.Context, tok OpenIDToken) (id.UserID, error)
}

// VerifierFunc adapts a function to Verifier.
type VerifierFunc func(ctx context.Context, tok OpenIDToken) (id.UserID, error)

// VerifyOpenID implements Verifier.
func (f VerifierFunc) VerifyOpenID(ctx context.Context, tok OpenIDToken) (id.UserID, error) {
	return f(ctx, tok)
}

// TokenTable is a Verifier for tests without a homeserver: it maps OpenID access tokens to
// users. The token's matrix_server_name must be the user's server.
type TokenTable map[string]id.UserID

// VerifyOpenID implements Verifier.
func (t TokenTable) VerifyOpenID(_ context.Context, tok OpenIDToken) (id.UserID, error) {
	u, ok := t[tok.AccessToken]
	if !ok {
		return "", errors.New("unknown OpenID token")
	}
	if u.Homeserver() != tok.MatrixServerName {
		return "", fmt.Errorf("token belongs to %s, not to server %q", u, tok.MatrixServerName)
	}
	return u, nil
}

// HomeserverVerifier checks OpenID tokens the way a real identity server does, by asking the
// homeserver's federation API GET /_matrix/federation/v1/openid/userinfo?access_token=...
// (Dendrite serves it only with federation enabled). Instead of server discovery it looks the
// server name up in Homeservers.
type HomeserverVerifier struct {
	// Homeservers maps server names (matrix_server_name) to base URLs, e.g. "localhost" ->
	// "http://127.0.0.1:8008".
	Homeservers map[string]string
	// Client makes the request; nil means http.DefaultClient.
	Client *http.Client
}

// VerifyOpenID implements Verifier.
func (v HomeserverVerifier) VerifyOpenID(ctx context.Context, tok OpenIDToken) (id.UserID, error) {
	base, ok := v.Homeservers[tok.MatrixServerName]
	if !ok {
		return "", fmt.Errorf("unknown homeserver %q", tok.MatrixServerName)
	}
	hc := v.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	u := strings.TrimRight(base, "/") + "/_matrix/federation/v1/openid/userinfo?access_token=" + url.QueryEscape(tok.AccessToken)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("ask homeserver %s: %w", tok.MatrixServerName, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("homeserver %s answered HTTP %d to openid/userinfo", tok.MatrixServerName, resp.StatusCode)
	}
	var info struct {
		Sub id.UserID `json:"sub"`
	}
	if err := json.Unmarshal(body, &info); err != nil || info.Sub == "" {
		return "", fmt.Errorf("homeserver %s sent no sub in openid/userinfo", tok.MatrixServerName)
	}
	if info.Sub.Homeserver() != tok.MatrixServerName {
		return "", fmt.Errorf("homeserver %s vouched for %s of another server", tok.MatrixServerName, info.Sub)
	}
	return info.Sub, nil
}

// Options configure a fake server. The zero value offers "none" and "sha256", has no terms
// and verifies tokens with an empty HomeserverVerifier (which refuses everything).
type Options struct {
	// Pepper is the initial lookup pepper; "" means a random one.
	Pepper string
	// Algorithms are what hash_details offers; nil means ["none", "sha256"] like sydent.
	Algorithms []string
	// Policies are the terms; none means no terms need accepting.
	Policies []Policy
	// Verifier checks OpenID tokens at registration.
	Verifier Verifier
}

// Request is one request the fake received, recorded before any fault is injected.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	// Authorization is the Authorization header, e.g. "Bearer abc".
	Authorization string
	// ContentType is the Content-Type header.
	ContentType string
	Body        []byte
	Time        time.Time
}

// Server is the fake identity server. All methods are safe for concurrent use.
type Server struct {
	verifier Verifier

	mu         sync.Mutex
	pepper     string                                        // guarded by mu
	algorithms []string                                      // guarded by mu
	policies   []Policy                                      // guarded by mu
	bindings   map[string]id.UserID                          // guarded by mu; MSISDN digits -> user
	tokens     map[string]id.UserID                          // guarded by mu; IS token -> user
	accepted   map[id.UserID]map[string]bool                 // guarded by mu; user -> accepted URLs
	requests   []Request                                     // guarded by mu
	intercept  func(http.ResponseWriter, *http.Request) bool // guarded by mu

	routes map[string]route // "METHOD path" -> route; immutable after New

	srv  *http.Server  // set by Start
	ln   net.Listener  // set by Start
	done chan struct{} // closed when Start's serving goroutine returns
}

// route is one endpoint: whether it needs a token and accepted terms, and its handler.
type route struct {
	auth  bool
	terms bool
	h     func(w http.ResponseWriter, r *http.Request, user id.UserID, body []byte)
}

// New returns a fake server; it does no I/O.
func New(opts Options) *Server {
	s := &Server{
		verifier:   opts.Verifier,
		pepper:     opts.Pepper,
		algorithms: slices.Clone(opts.Algorithms),
		policies:   slices.Clone(opts.Policies),
		bindings:   map[string]id.UserID{},
		tokens:     map[string]id.UserID{},
		accepted:   map[id.UserID]map[string]bool{},
	}
	s.routes = map[string]route{
		"GET " + PathVersions:    {false, false, s.versions},
		"GET " + PathStatus:      {false, false, s.status},
		"POST " + PathRegister:   {false, false, s.register},
		"GET " + PathAccount:     {true, true, s.account},
		"POST " + PathLogout:     {true, false, s.logout},
		"GET " + PathTerms:       {false, false, s.getTerms},
		"POST " + PathTerms:      {true, false, s.postTerms},
		"GET " + PathHashDetails: {true, true, s.hashDetails},
		"POST " + PathLookup:     {true, true, s.lookup},
	}
	if s.verifier == nil {
		s.verifier = HomeserverVerifier{}
	}
	if s.pepper == "" {
		s.pepper = randomString()
	}
	if s.algorithms == nil {
		s.algorithms = []string{"none", "sha256"}
	}
	return s
}

// Start serves the fake on a free 127.0.0.1 port until Close. The serving goroutine belongs
// to the Server.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the fake identity server: %w", err)
	}
	s.mu.Lock()
	if s.srv != nil {
		s.mu.Unlock()
		ln.Close()
		return errors.New("fake identity server already started")
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.done = make(chan struct{})
	srv, done := s.srv, s.done
	s.mu.Unlock()
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return nil
}

// URL is the base URL of a started server, e.g. "http://127.0.0.1:41234".
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// Close stops a started server, cutting open connections, and waits for it.
func (s *Server) Close() error {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Close()
	<-done
	return err
}

// Pepper returns the current lookup pepper.
func (s *Server) Pepper() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pepper
}

// SetPepper replaces the pepper; lookups with the old one get M_INVALID_PEPPER.
func (s *Server) SetPepper(p string) {
	s.mu.Lock()
	s.pepper = p
	s.mu.Unlock()
}

// RotatePepper replaces the pepper with a random one and returns it.
func (s *Server) RotatePepper() string {
	p := randomString()
	s.SetPepper(p)
	return p
}

// SetAlgorithms replaces the algorithms hash_details offers and lookup accepts.
func (s *Server) SetAlgorithms(algs []string) {
	s.mu.Lock()
	s.algorithms = slices.Clone(algs)
	s.mu.Unlock()
}

// SetPolicies replaces the terms. Accounts must accept the new policies before going on.
func (s *Server) SetPolicies(p []Policy) {
	s.mu.Lock()
	s.policies = slices.Clone(p)
	s.mu.Unlock()
}

// Bind records that number (E.164, with or without "+") belongs to user.
func (s *Server) Bind(number string, user id.UserID) {
	s.mu.Lock()
	s.bindings[strings.TrimPrefix(number, "+")] = user
	s.mu.Unlock()
}

// Unbind removes number's binding.
func (s *Server) Unbind(number string) {
	s.mu.Lock()
	delete(s.bindings, strings.TrimPrefix(number, "+"))
	s.mu.Unlock()
}

// ExpireTokens invalidates every identity-server token issued so far, as if they had expired.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	clear(s.tokens)
	s.mu.Unlock()
}

// Tokens returns how many identity-server tokens are valid.
func (s *Server) Tokens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tokens)
}

// Accepted returns the policy URLs user has accepted, sorted.
func (s *Server) Accepted(user id.UserID) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for u := range s.accepted[user] {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// SetIntercept installs a fault injector that sees every request (after it is recorded) and
// returns true when it has answered it itself. nil removes it.
func (s *Server) SetIntercept(f func(w http.ResponseWriter, r *http.Request) bool) {
	s.mu.Lock()
	s.intercept = f
	s.mu.Unlock()
}

// Requests returns the recorded requests, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Count returns how many recorded requests had this method and path.
func (s *Server) Count(method, path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.requests {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

// ResetRequests forgets the recorded requests.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	s.requests = nil
	s.mu.Unlock()
}

// Hash is the spec's "sha256" lookup hash: URL-safe unpadded base64 of
// SHA-256("<address> <medium> <pepper>"). For phone numbers address is the MSISDN (E.164
// digits without "+") and medium is "msisdn".
func Hash(address, medium, pepper string) string {
	sum := sha256.Sum256([]byte(address + " " + medium + " " + pepper))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", "could not read the body")
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, Request{
		Method:        r.Method,
		Path:          r.URL.Path,
		Query:         r.URL.Query(),
		Authorization: r.Header.Get("Authorization"),
		ContentType:   r.Header.Get("Content-Type"),
		Body:          body,
		Time:          time.Now(),
	})
	intercept := s.intercept
	s.mu.Unlock()
	if intercept != nil && intercept(w, r) {
		return
	}

	rt, ok := s.routes[r.Method+" "+r.URL.Path]
	if !ok {
		for k := range s.routes {
			if strings.HasSuffix(k, " "+r.URL.Path) {
				writeError(w, http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "method not allowed")
				return
			}
		}
		writeError(w, http.StatusNotFound, "M_UNRECOGNIZED", "unrecognized request")
		return
	}
	var user id.UserID
	if rt.auth {
		tok := r.URL.Query().Get("access_token")
		if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
			tok = strings.TrimPrefix(h, "Bearer ")
		}
		s.mu.Lock()
		user = s.tokens[tok]
		signed := s.signedLocked(user)
		s.mu.Unlock()
		if tok == "" || user == "" {
			writeError(w, http.StatusUnauthorized, "M_UNAUTHORIZED", "unrecognised access token")
			return
		}
		if rt.terms && !signed {
			writeError(w, http.StatusForbidden, "M_TERMS_NOT_SIGNED", "please accept our updated terms of service before continuing")
			return
		}
	}
	rt.h(w, r, user, body)
}

// signedLocked reports whether user accepted one URL of every current policy. Caller holds mu.
func (s *Server) signedLocked(user id.UserID) bool {
	for _, p := range s.policies {
		ok := false
		for _, d := range p.Docs {
			if s.accepted[user][d.URL] {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func (s *Server) versions(w http.ResponseWriter, _ *http.Request, _ id.UserID, _ []byte) {
	writeJSON(w, http.StatusOK, map[string]any{"versions": []string{"v1.1", "v1.2", "v1.3", "v1.4"}})
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request, _ id.UserID, _ []byte) {
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) register(w http.ResponseWriter, r *http.Request, _ id.UserID, body []byte) {
	var tok OpenIDToken
	if err := json.Unmarshal(body, &tok); err != nil {
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", "body is not an OpenID token object")
		return
	}
	if tok.AccessToken == "" || tok.MatrixServerName == "" {
		writeError(w, http.StatusBadRequest, "M_MISSING_PARAMS", "access_token and matrix_server_name are required")
		return
	}
	user, err := s.verifier.VerifyOpenID(r.Context(), tok)
	if err != nil {
		writeError(w, http.StatusUnauthorized, "M_UNAUTHORIZED", "could not verify the OpenID token: "+err.Error())
		return
	}
	t := randomString()
	s.mu.Lock()
	s.tokens[t] = user
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"token": t})
}

func (s *Server) account(w http.ResponseWriter, _ *http.Request, user id.UserID, _ []byte) {
	writeJSON(w, http.StatusOK, map[string]id.UserID{"user_id": user})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, _ id.UserID, _ []byte) {
	tok := r.URL.Query().Get("access_token")
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		tok = strings.TrimPrefix(h, "Bearer ")
	}
	s.mu.Lock()
	delete(s.tokens, tok)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) getTerms(w http.ResponseWriter, _ *http.Request, _ id.UserID, _ []byte) {
	s.mu.Lock()
	policies := map[string]map[string]any{}
	for _, p := range s.policies {
		m := map[string]any{"version": p.Version}
		for _, d := range p.Docs {
			m[d.Lang] = map[string]string{"name": d.Name, "url": d.URL}
		}
		policies[p.ID] = m
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"policies": policies})
}

func (s *Server) postTerms(w http.ResponseWriter, _ *http.Request, user id.UserID, body []byte) {
	var req struct {
		UserAccepts *[]string `json:"user_accepts"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", "body is not JSON")
		return
	}
	if req.UserAccepts == nil {
		writeError(w, http.StatusBadRequest, "M_MISSING_PARAMS", "user_accepts is required")
		return
	}
	s.mu.Lock()
	known := map[string]bool{}
	for _, p := range s.policies {
		for _, d := range p.Docs {
			known[d.URL] = true
		}
	}
	if s.accepted[user] == nil {
		s.accepted[user] = map[string]bool{}
	}
	for _, u := range *req.UserAccepts {
		if known[u] { // like sydent, unknown URLs are ignored
			s.accepted[user][u] = true
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) hashDetails(w http.ResponseWriter, _ *http.Request, _ id.UserID, _ []byte) {
	s.mu.Lock()
	resp := map[string]any{"lookup_pepper": s.pepper, "algorithms": slices.Clone(s.algorithms)}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) lookup(w http.ResponseWriter, _ *http.Request, _ id.UserID, body []byte) {
	var req struct {
		Algorithm *string   `json:"algorithm"`
		Pepper    *string   `json:"pepper"`
		Addresses *[]string `json:"addresses"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", "body is not JSON")
		return
	}
	if req.Algorithm == nil || req.Pepper == nil || req.Addresses == nil {
		writeError(w, http.StatusBadRequest, "M_MISSING_PARAMS", "algorithm, pepper and addresses are required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.algorithms, *req.Algorithm) {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "unsupported algorithm")
		return
	}
	if *req.Pepper != s.pepper {
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"errcode": "M_INVALID_PEPPER", "error": "unknown or invalid pepper - has it been rotated?",
			"algorithms": slices.Clone(s.algorithms), "lookup_pepper": s.pepper,
		})
		return
	}
	table := make(map[string]id.UserID, len(s.bindings))
	for msisdn, user := range s.bindings {
		if *req.Algorithm == "none" {
			table[msisdn+" msisdn"] = user
		} else {
			table[Hash(msisdn, "msisdn", s.pepper)] = user
		}
	}
	mappings := map[string]id.UserID{}
	for _, a := range *req.Addresses {
		if u, ok := table[a]; ok {
			mappings[a] = u
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"mappings": mappings})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"errcode": code, "error": msg})
}

func randomString() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
