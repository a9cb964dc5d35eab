package directory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// OpenIDTokenSource hands out OpenID tokens from the homeserver, which the identity server
// exchanges for its own access token (POST /_matrix/identity/v2/account/register). The bridge
// implements it with its bot's client: mautrix Client.RequestOpenIDToken, e.g. through
// OpenIDFunc(bot.RequestOpenIDToken). It may be called from any goroutine.
type OpenIDTokenSource interface {
	OpenIDToken(ctx context.Context) (*mautrix.RespOpenIDToken, error)
}

// OpenIDFunc adapts a function, such as a mautrix Client's RequestOpenIDToken method, to
// OpenIDTokenSource.
type OpenIDFunc func(ctx context.Context) (*mautrix.RespOpenIDToken, error)

// OpenIDToken implements OpenIDTokenSource.
func (f OpenIDFunc) OpenIDToken(ctx context.Context) (*mautrix.RespOpenIDToken, error) {
	return f(ctx)
}

// Identity Service API v2 paths, relative to the server's base URL.
const (
	pathRegister    = "/_matrix/identity/v2/account/register"
	pathTerms       = "/_matrix/identity/v2/terms"
	pathHashDetails = "/_matrix/identity/v2/hash_details"
	pathLookup      = "/_matrix/identity/v2/lookup"
)

const (
	// maxBatch bounds the addresses in one POST /lookup; larger lookups are split.
	maxBatch = 100
	// maxBody bounds what is read of any identity-server response.
	maxBody = 1 << 20
	// maxSteps bounds the requests of one lookup conversation (register, terms, pepper,
	// lookup and one retry of each), so that no server answer can cause a loop.
	maxSteps = 12
	// algorithmSHA256 is the only lookup algorithm the client uses.
	algorithmSHA256 = "sha256"
	// termsKey is the config key an operator sets to accept terms.
	termsKey = "directory.identity_server.accepted_terms"
	// urlKey is the config key of the identity server's URL.
	urlKey = "directory.identity_server.url"
)

// identityClient speaks the Identity Service API v2 to one server. One conversation (a
// Lookup) runs at a time: sem serializes them, and whoever holds sem owns token and pepper.
type identityClient struct {
	base     string          // base URL without trailing slash
	accepted map[string]bool // URLs the operator accepted
	openid   OpenIDTokenSource
	http     *http.Client
	timeout  time.Duration // per HTTP request
	log      *zap.Logger

	sem    chan struct{} // capacity 1; held for a whole Lookup
	token  string        // IS access token; "" until registered; guarded by sem
	pepper string        // current lookup pepper; "" until fetched; guarded by sem
}

// attempt records which one-time recoveries a conversation already used.
type attempt struct {
	reregistered bool
	refetched    bool
	termsTried   bool
	signTerms    bool // a 403 M_TERMS_NOT_SIGNED is pending: fetch and sign terms next
}

// lookup asks the identity server for the Matrix IDs bound to the given E.164 numbers. The
// map holds only the numbers that are bound. Errors wrap ErrIdentityServer.
func (c *identityClient) lookup(ctx context.Context, numbers []string) (map[string]id.UserID, error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, c.fail("wait for the identity server", ctx.Err())
	}
	defer func() { <-c.sem }()

	out := make(map[string]id.UserID, len(numbers))
	for start := 0; start < len(numbers); start += maxBatch {
		batch := numbers[start:min(start+maxBatch, len(numbers))]
		if err := c.converse(ctx, batch, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// converse runs one lookup of up to maxBatch numbers, registering, accepting terms and
// fetching the pepper as the server demands, each recovery at most once.
func (c *identityClient) converse(ctx context.Context, numbers []string, out map[string]id.UserID) error {
	var st attempt
	var last error // the last failure a recovery answered
	for range maxSteps {
		var err error
		switch {
		case c.token == "":
			if err = c.register(ctx); err != nil {
				return err
			}
			continue
		case st.signTerms:
			if err = c.signTerms(ctx); err == nil {
				st.signTerms = false
				continue
			}
		case c.pepper == "":
			if err = c.hashDetails(ctx); err == nil {
				continue
			}
		default:
			if err = c.post(ctx, numbers, out); err == nil {
				return nil
			}
		}
		if !c.recover(err, &st) {
			return err
		}
		last = err
	}
	return c.fail("look up numbers", fmt.Errorf("gave up after %d requests, last: %w", maxSteps, last))
}

// recover decides whether err (from any step but register) is one the client fixes itself,
// and prepares the fix: a 401 registers again, M_TERMS_NOT_SIGNED signs the terms, and
// M_INVALID_PEPPER fetches the pepper again, each once per conversation.
func (c *identityClient) recover(err error, st *attempt) bool {
	me, ok := matrixError(err)
	if !ok {
		return false
	}
	switch {
	case me.Status == http.StatusUnauthorized || me.Code == codeUnauthorized || me.Code == codeUnknownToken:
		if st.reregistered {
			return false
		}
		st.reregistered = true
		c.token = ""
		c.log.Info("registering again with identity server after 401", zap.String("identity_server", c.base), zap.String("errcode", me.Code))
		return true
	case me.Code == codeTermsNotSigned:
		if st.termsTried {
			return false
		}
		st.termsTried = true
		st.signTerms = true
		return true
	case me.Code == codeInvalidPepper:
		if st.refetched {
			return false
		}
		st.refetched = true
		c.pepper = ""
		c.log.Info("fetching identity server pepper again after M_INVALID_PEPPER", zap.String("identity_server", c.base))
		return true
	}
	return false
}

// fail wraps err as an identity-server error for operation op and says what to check.
func (c *identityClient) fail(op string, err error) error {
	if errors.Is(err, ErrTermsNotAccepted) {
		return fmt.Errorf("%w: %s at %s: %w", ErrIdentityServer, op, c.base, err)
	}
	hint := "check that the identity server is up and reachable, or remove " + urlKey + " to stop asking it"
	me, isMatrix := matrixError(err)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		hint = "the identity server did not answer in time; check its load and network, or remove " + urlKey
	case errors.Is(err, context.Canceled):
		hint = "the lookup was cancelled"
	case isMatrix && me.Status == http.StatusUnauthorized:
		hint = "the identity server rejects the token it issued even right after registering; check the identity server's logs"
	case isMatrix && me.Code == codeTermsNotSigned:
		hint = "the identity server still demands terms right after accepting them; check the identity server's logs"
	case isMatrix && me.Code == codeInvalidPepper:
		hint = "the identity server rejects the pepper it just gave out; check the identity server's logs"
	case isMatrix && me.Status < 500:
		hint = "the identity server refused the request; check that " + urlKey + " points at a Matrix identity server (v2 API)"
	case errors.As(err, new(*badAnswer)):
		hint = "the answer does not follow the Identity Service API v2; check that " + urlKey + " points at a Matrix identity server"
	}
	return fmt.Errorf("%w: %s at %s: %w; %s", ErrIdentityServer, op, c.base, err, hint)
}

// register exchanges a fresh OpenID token from the homeserver for an identity-server token.
func (c *identityClient) register(ctx context.Context) error {
	tok, err := c.openid.OpenIDToken(ctx)
	if err != nil {
		return fmt.Errorf("%w: request an OpenID token from the homeserver for %s: %w; check that the bridge bot can reach the homeserver",
			ErrIdentityServer, c.base, err)
	}
	if tok == nil || tok.AccessToken == "" || tok.MatrixServerName == "" {
		return fmt.Errorf("%w: request an OpenID token from the homeserver for %s: the answer lacks access_token or matrix_server_name; check the homeserver",
			ErrIdentityServer, c.base)
	}
	body := *tok
	if body.TokenType == "" {
		body.TokenType = "Bearer"
	}
	var resp struct {
		Token       *string `json:"token"`
		AccessToken *string `json:"access_token"` // sydent also sends this; older servers only this
	}
	if err := c.do(ctx, http.MethodPost, pathRegister, false, &body, &resp, nil); err != nil {
		if me, ok := matrixError(err); ok && me.Status < 500 {
			return fmt.Errorf("%w: register at %s with the homeserver's OpenID token: %w; the identity server must reach the homeserver %s at GET /_matrix/federation/v1/openid/userinfo (federation must be enabled)",
				ErrIdentityServer, c.base, err, tok.MatrixServerName)
		}
		return c.fail("register", err)
	}
	switch {
	case resp.Token != nil && *resp.Token != "":
		c.token = *resp.Token
	case resp.AccessToken != nil && *resp.AccessToken != "":
		c.token = *resp.AccessToken
	default:
		return c.fail("register", badAnswerf("the answer has no token"))
	}
	c.log.Info("registered with identity server", zap.String("identity_server", c.base), zap.String("homeserver", tok.MatrixServerName))
	return nil
}

// policy is one entry of GET /terms.
type policy struct {
	id, version string
	docs        []policyDoc // sorted by language
}

type policyDoc struct{ lang, name, url string }

// signTerms fetches the server's terms and, when the operator accepted every policy in
// config, tells the server so. Otherwise it fails with ErrTermsNotAccepted.
func (c *identityClient) signTerms(ctx context.Context) error {
	var raw struct {
		Policies map[string]map[string]json.RawMessage `json:"policies"`
	}
	if err := c.do(ctx, http.MethodGet, pathTerms, false, nil, &raw, nil); err != nil {
		return c.fail("get terms", err)
	}
	if raw.Policies == nil {
		return c.fail("get terms", badAnswerf("the answer has no policies object"))
	}
	policies, err := parsePolicies(raw.Policies)
	if err != nil {
		return c.fail("get terms", badAnswerf("%v", err))
	}
	if len(policies) == 0 {
		return c.fail("accept terms", errors.New("the server demands terms (M_TERMS_NOT_SIGNED) but GET /terms lists none; ask its operator"))
	}
	var accepts, missing []string
	for _, p := range policies {
		var hit string
		for _, d := range p.docs {
			if c.accepted[d.url] {
				hit = d.url
				break
			}
		}
		if hit != "" {
			accepts = append(accepts, hit)
			continue
		}
		var urls []string
		for _, d := range p.docs {
			urls = append(urls, d.url)
		}
		name := p.id
		if len(p.docs) > 0 && p.docs[0].name != "" {
			name = p.docs[0].name
		}
		missing = append(missing, fmt.Sprintf("%q version %s (%s)", name, p.version, strings.Join(urls, " or ")))
	}
	if len(missing) > 0 {
		return c.fail("accept terms", fmt.Errorf("%w: the server requires %s; read them and, if you agree, add one URL of each to %s",
			ErrTermsNotAccepted, strings.Join(missing, ", "), termsKey))
	}
	req := struct {
		UserAccepts []string `json:"user_accepts"`
	}{accepts}
	if err := c.do(ctx, http.MethodPost, pathTerms, true, &req, nil, nil); err != nil {
		return c.fail("accept terms", err)
	}
	c.log.Info("accepted identity server terms", zap.String("identity_server", c.base), zap.Strings("urls", accepts))
	return nil
}

// parsePolicies reads the policy map of GET /terms: {"<id>": {"version": "..", "<lang>":
// {"name", "url"}}}.
func parsePolicies(in map[string]map[string]json.RawMessage) ([]policy, error) {
	var out []policy
	for pid, fields := range in {
		p := policy{id: pid}
		for k, v := range fields {
			if k == "version" {
				if err := json.Unmarshal(v, &p.version); err != nil {
					return nil, fmt.Errorf("policy %q: version is not a string", pid)
				}
				continue
			}
			var doc struct {
				Name string `json:"name"`
				URL  string `json:"url"`
			}
			if err := json.Unmarshal(v, &doc); err != nil {
				continue // unknown non-language field
			}
			if doc.URL == "" {
				return nil, fmt.Errorf("policy %q language %q has no url", pid, k)
			}
			p.docs = append(p.docs, policyDoc{lang: k, name: doc.Name, url: doc.URL})
		}
		if p.version == "" {
			return nil, fmt.Errorf("policy %q has no version", pid)
		}
		if len(p.docs) == 0 {
			return nil, fmt.Errorf("policy %q has no language with a url", pid)
		}
		sort.Slice(p.docs, func(i, j int) bool {
			// English first, so that error messages name the policy in English when they can.
			if (p.docs[i].lang == "en") != (p.docs[j].lang == "en") {
				return p.docs[i].lang == "en"
			}
			return p.docs[i].lang < p.docs[j].lang
		})
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out, nil
}

// hashDetails fetches the lookup pepper and checks that the server offers sha256.
func (c *identityClient) hashDetails(ctx context.Context) error {
	var resp struct {
		Pepper     *string  `json:"lookup_pepper"`
		Algorithms []string `json:"algorithms"`
	}
	if err := c.do(ctx, http.MethodGet, pathHashDetails, true, nil, &resp, nil); err != nil {
		return c.fail("get hash details", err)
	}
	if resp.Pepper == nil || *resp.Pepper == "" {
		return c.fail("get hash details", badAnswerf("the answer has no lookup_pepper"))
	}
	if !slices.Contains(resp.Algorithms, algorithmSHA256) {
		return c.fail("get hash details", badAnswerf("the server offers algorithms %q but not sha256, which the spec requires", resp.Algorithms))
	}
	c.pepper = *resp.Pepper
	return nil
}

// post sends one POST /lookup and adds the bound numbers to out.
func (c *identityClient) post(ctx context.Context, numbers []string, out map[string]id.UserID) error {
	byHash := make(map[string]string, len(numbers))
	req := struct {
		Algorithm string   `json:"algorithm"`
		Pepper    string   `json:"pepper"`
		Addresses []string `json:"addresses"`
	}{Algorithm: algorithmSHA256, Pepper: c.pepper, Addresses: make([]string, 0, len(numbers))}
	for _, n := range numbers {
		h := HashMSISDN(n, c.pepper)
		if _, dup := byHash[h]; !dup {
			req.Addresses = append(req.Addresses, h)
		}
		byHash[h] = n
	}
	var resp struct {
		Mappings map[string]string `json:"mappings"`
	}
	secrets := append(append([]string(nil), req.Addresses...), numbers...)
	if err := c.do(ctx, http.MethodPost, pathLookup, true, &req, &resp, secrets); err != nil {
		return c.fail("look up numbers", err)
	}
	if resp.Mappings == nil {
		return c.fail("look up numbers", badAnswerf("the answer has no mappings object"))
	}
	found := 0
	for h, mxid := range resp.Mappings {
		n, ok := byHash[h]
		if !ok {
			continue // not asked for; ignore rather than trust
		}
		u, err := validateUserID(mxid)
		if err != nil {
			return c.fail("look up numbers", badAnswerf("the answer maps an address to %q, which is not a Matrix user ID", truncate(mxid, 80)))
		}
		out[n] = u
		found++
	}
	c.log.Debug("looked up numbers on identity server", zap.String("identity_server", c.base),
		zap.Int("asked", len(req.Addresses)), zap.Int("found", found))
	return nil
}

// do sends one JSON request and decodes a 2xx JSON answer into out (when non-nil). A non-2xx
// answer becomes a *MatrixError whose message has every string in secrets removed. Each
// request is bounded by c.timeout.
func (c *identityClient) do(ctx context.Context, method, path string, auth bool, in, out any, secrets []string) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error repeats the URL, which holds no secret (tokens go in the header).
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("%s %s: read answer (HTTP %d): %w", method, path, resp.StatusCode, err)
	}
	if len(data) > maxBody {
		return fmt.Errorf("%s %s: answer larger than %d bytes", method, path, maxBody)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		me := &MatrixError{Status: resp.StatusCode}
		var e struct {
			Code    string `json:"errcode"`
			Message string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Code != "" {
			me.Code = truncate(scrub(e.Code, secrets), 60)
			me.Message = truncate(scrub(e.Message, secrets), 200)
		}
		return fmt.Errorf("%s %s: %w", method, path, me)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		return fmt.Errorf("%s %s: %w", method, path, badAnswerf("answer is not the expected JSON (HTTP %d, %q, %d bytes): %s",
			resp.StatusCode, ct, len(data), jsonProblem(err)))
	}
	return nil
}

// badAnswer is a 2xx answer that does not follow the spec: not JSON, fields missing or of the
// wrong type, no sha256, a mapping to something that is not a user ID.
type badAnswer struct{ msg string }

func (e *badAnswer) Error() string { return e.msg }

func badAnswerf(format string, args ...any) error { return &badAnswer{fmt.Sprintf(format, args...)} }

// jsonProblem describes a decoding error without quoting the document.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q is a JSON %s, not %s", te.Field, te.Value, te.Type)
	default:
		return "invalid JSON"
	}
}

// scrub removes every secret from s.
func scrub(s string, secrets []string) string {
	for _, x := range secrets {
		if x == "" {
			continue
		}
		s = strings.ReplaceAll(s, x, "<redacted>")
		if d := strings.TrimPrefix(x, "+"); d != x {
			s = strings.ReplaceAll(s, d, "<redacted>")
		}
	}
	return s
}

// truncate shortens s to at most n runes.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}
