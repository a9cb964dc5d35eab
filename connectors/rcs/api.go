package rcs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/fallback"
)

// maxResponseBody caps what is read of a provider answer.
const maxResponseBody = 1 << 20

// userAgent is sent with every provider request.
const userAgent = "bubbled-rcs/1"

// tokenCache holds the current access token of one provider and fetches a
// new one when it is missing, expired or was refused with a 401. Safe for
// concurrent use; fetches are serialised.
type tokenCache struct {
	// fetch gets a fresh token from the token endpoint, bypassing caches.
	fetch func(ctx context.Context) (*oauth2.Token, error)

	mu  sync.Mutex
	tok *oauth2.Token // guarded by mu
}

func (c *tokenCache) get(ctx context.Context) (*oauth2.Token, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok != nil && c.tok.Valid() {
		return c.tok, nil
	}
	tok, err := c.fetch(ctx)
	if err != nil {
		return nil, err
	}
	if tok.AccessToken == "" {
		return nil, errors.New("token endpoint returned no access_token")
	}
	c.tok = tok
	return tok, nil
}

// invalidate drops the cached token if it is still access, so the next get
// fetches a new one.
func (c *tokenCache) invalidate(access string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok != nil && c.tok.AccessToken == access {
		c.tok = nil
	}
}

// apiClient is the HTTP core shared by the providers: bearer token,
// JSON, error classification and retries.
type apiClient struct {
	provider string // "rbm" / "maap"
	base     string // base URL without trailing slash
	http     *http.Client
	tokens   *tokenCache
	clock    fallback.Clock
	retry    RetryPolicy
	log      *zap.Logger
}

// apiRequest is one provider call.
type apiRequest struct {
	op     string // for errors and logs: "send message"
	method string
	path   string // escaped path below base, starting with "/"
	query  url.Values
	body   any // marshalled to JSON; nil for no body
	// accept lists non-2xx statuses returned as a response, not an error
	// (404 for a capability check, 409 for a duplicate send).
	accept []int
	// notFound overrides the class of a 404 (default [ErrNotRCS]).
	notFound error
}

type apiResponse struct {
	status int
	body   []byte
}

// newAPIClient builds the core of a provider; nil clock and log take
// their defaults, zero retry fields the RCS defaults.
func newAPIClient(provider, base string, hc *http.Client, fetch func(context.Context) (*oauth2.Token, error),
	clock fallback.Clock, retry RetryPolicy, log *zap.Logger) *apiClient {
	if clock == nil {
		clock = fallback.SystemClock{}
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &apiClient{
		provider: provider,
		base:     strings.TrimRight(base, "/"),
		http:     hc,
		tokens:   &tokenCache{fetch: fetch},
		clock:    clock,
		retry:    retry.withDefaults(),
		log:      log,
	}
}

// capability makes a capability check (GET path?query) and decodes the
// answer into caps. A 404 means "not an RCS user": found is false, err nil.
// An unreadable 200 is classed temporary, so the router asks again later
// instead of deciding on an answer it could not read.
func (c *apiClient) capability(ctx context.Context, path string, query url.Values, caps any) (found bool, err error) {
	const op = "check capability"
	resp, err := c.do(ctx, apiRequest{op: op, method: http.MethodGet, path: path, query: query,
		accept: []int{http.StatusNotFound}})
	if err != nil || resp.status == http.StatusNotFound {
		return false, err
	}
	if err := json.Unmarshal(resp.body, caps); err != nil {
		return false, &APIError{Provider: c.provider, Op: op, Status: resp.status,
			Message: "unreadable capabilities: " + err.Error(), Class: ErrTemporary}
	}
	return true, nil
}

func newHTTPClient(c *http.Client) *http.Client {
	if c != nil {
		return c
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// do performs rq: it fetches a token, sends the request, refreshes the
// token once after a 401, and retries temporary failures with backoff (or
// the provider's Retry-After) on the injected clock.
func (c *apiClient) do(ctx context.Context, rq apiRequest) (*apiResponse, error) {
	var payload []byte
	if rq.body != nil {
		var err error
		if payload, err = json.Marshal(rq.body); err != nil {
			return nil, fmt.Errorf("%s %s: encode request: %w", c.provider, rq.op, err)
		}
	}
	target := c.base + rq.path
	if len(rq.query) > 0 {
		target += "?" + rq.query.Encode()
	}
	refreshed := false
	for attempt := 1; ; attempt++ {
		resp, apiErr, err := c.once(ctx, rq, target, payload, &refreshed)
		if err != nil {
			return nil, err
		}
		if apiErr == nil {
			return resp, nil
		}
		if !errors.Is(apiErr, ErrTemporary) || attempt >= c.retry.Policy.Attempts {
			return nil, apiErr
		}
		wait := apiErr.RetryAfter
		if wait > c.retry.MaxRetryAfter {
			return nil, apiErr
		}
		if wait <= 0 {
			wait = c.retry.backoff(attempt)
		}
		c.log.Debug("retrying RCS provider call",
			zap.String("provider", c.provider), zap.String("op", rq.op),
			zap.Int("attempt", attempt), zap.Duration("wait", wait), zap.Error(apiErr))
		if err := fallback.Sleep(ctx, c.clock, wait); err != nil {
			return nil, fmt.Errorf("%s %s: gave up waiting to retry after %v: %w", c.provider, rq.op, apiErr, err)
		}
	}
}

// once makes one attempt, plus at most one immediate retry with a fresh
// token after a 401. It returns a response, or a classified *APIError
// (possibly temporary), or a hard error (context done) that ends the call.
func (c *apiClient) once(ctx context.Context, rq apiRequest, target string, payload []byte, refreshed *bool) (*apiResponse, *APIError, error) {
	for {
		tok, err := c.tokens.get(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("%s %s: fetch token: %w", c.provider, rq.op, ctx.Err())
			}
			return nil, c.tokenError(err), nil
		}
		var body io.Reader
		if payload != nil {
			body = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(ctx, rq.method, target, body)
		if err != nil {
			return nil, nil, fmt.Errorf("%s %s: build request: %w", c.provider, rq.op, err)
		}
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", userAgent)
		if payload != nil {
			req.Header.Set("Content-Type", "application/json; charset=utf-8")
		}
		resp, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("%s %s: %w", c.provider, rq.op, ctx.Err())
			}
			return nil, &APIError{Provider: c.provider, Op: rq.op, Class: ErrTemporary, Err: redactURLError(err)}, nil
		}
		data, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
		resp.Body.Close()
		if readErr != nil && resp.StatusCode < 300 {
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("%s %s: %w", c.provider, rq.op, ctx.Err())
			}
			return nil, &APIError{Provider: c.provider, Op: rq.op, Status: resp.StatusCode, Class: ErrTemporary, Err: readErr}, nil
		}
		st := resp.StatusCode
		if st >= 200 && st < 300 || contains(rq.accept, st) {
			return &apiResponse{status: st, body: data}, nil, nil
		}
		if st == http.StatusUnauthorized && !*refreshed {
			*refreshed = true
			c.tokens.invalidate(tok.AccessToken)
			c.log.Debug("refreshing RCS provider token after HTTP 401",
				zap.String("provider", c.provider), zap.String("op", rq.op))
			continue
		}
		apiErr := &APIError{Provider: c.provider, Op: rq.op, Status: st, Class: classify(st)}
		apiErr.Code, apiErr.Message = parseErrorBody(data)
		if st == http.StatusNotFound && rq.notFound != nil {
			apiErr.Class = rq.notFound
		}
		if retryable(st) {
			apiErr.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), c.clock.Now())
		}
		return nil, apiErr, nil
	}
}

// tokenError classifies a failed token fetch: the endpoint refusing the
// credentials is [ErrAuth]; 429/5xx and network failures are temporary.
func (c *apiClient) tokenError(err error) *APIError {
	apiErr := &APIError{Provider: c.provider, Op: "fetch access token", Err: err}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		apiErr.Err = nil
		apiErr.Status = re.Response.StatusCode
		apiErr.Code, apiErr.Message = re.ErrorCode, re.ErrorDescription
		if apiErr.Code == "" {
			apiErr.Code, apiErr.Message = parseErrorBody(re.Body)
		}
		if retryable(apiErr.Status) {
			apiErr.Class = ErrTemporary
			apiErr.RetryAfter = parseRetryAfter(re.Response.Header.Get("Retry-After"), c.clock.Now())
		} else {
			apiErr.Class = ErrAuth
		}
		return apiErr
	}
	// The key was checked when the provider was built, so what is left is
	// the network (oauth2 does not wrap those errors).
	apiErr.Class = ErrTemporary
	return apiErr
}

// redactURLError drops the query (which holds only IDs, but keep logs
// short) from a *url.Error.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery = ""
			return &url.Error{Op: ue.Op, URL: u.String(), Err: ue.Err}
		}
	}
	return err
}

// parseErrorBody extracts a code and message from the error shapes the
// providers use: google.rpc.Status ({"error":{"code","message","status"}}),
// OAuth ({"error":"…","error_description":"…"}) and the OMA/GSMA
// RequestError ({"RequestError":{"ServiceException":{"messageId","text"}}}).
// Anything else becomes the start of the body as text.
func parseErrorBody(body []byte) (code, message string) {
	var g struct {
		Error            json.RawMessage `json:"error"`
		ErrorDescription string          `json:"error_description"`
		RequestError     map[string]struct {
			MessageID string `json:"messageId"`
			Text      string `json:"text"`
		} `json:"RequestError"`
	}
	if json.Unmarshal(body, &g) == nil {
		if len(g.Error) > 0 {
			var st struct {
				Status  string `json:"status"`
				Message string `json:"message"`
			}
			var s string
			if json.Unmarshal(g.Error, &st) == nil && (st.Status != "" || st.Message != "") {
				return st.Status, cut(st.Message)
			} else if json.Unmarshal(g.Error, &s) == nil {
				return s, cut(g.ErrorDescription)
			}
		}
		for _, e := range g.RequestError {
			return e.MessageID, cut(e.Text)
		}
	}
	return "", cut(strings.TrimSpace(string(body)))
}

// cut shortens provider text to 300 bytes on a rune boundary.
func cut(s string) string {
	const n = 300
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// numberPath returns the escaped path segment of an E.164 number or an
// ErrInvalidRequest error.
func numberPath(provider, op, e164 string) (string, error) {
	if !ValidNumber(e164) {
		return "", fmt.Errorf("%s %s: %w: %q is not an E.164 number (+<country><number>)", provider, op, ErrInvalidRequest, phone.Mask(e164))
	}
	return url.PathEscape(e164), nil
}
