package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/fallback"
)

// Defaults of Config.
const (
	// DefaultMaxBody bounds a request body (64 KiB).
	DefaultMaxBody = 64 << 10
	// DefaultGiveUpAfter is how long a message the router cannot take yet
	// (no line connected, every route temporarily failing) is retried
	// before it fails.
	DefaultGiveUpAfter = 24 * time.Hour
	// DefaultWorkers is how many messages are handed to the router at once.
	DefaultWorkers = 8
)

// Sender is what the API needs from the bridge: the router and the
// Matrix room of the conversation. Both calls must be idempotent for one
// Message.ID (a restart repeats a call that may have been done).
type Sender interface {
	// Send hands m to the router, by m.Route ("auto": the ladder), from
	// the line m.Line, under m.RouterID(). It returns the route taken.
	// Errors are classified with fallback.Classify: temporary ones are
	// retried, anything else fails the message with err's text.
	Send(ctx context.Context, m *Message) (fallback.Route, error)
	// Mirror posts m into the contact's Matrix room of the line, marked
	// as sent by the token m.Token, so the conversation stays whole.
	Mirror(ctx context.Context, m *Message) error
}

// Config configures a Server.
type Config struct {
	// Tokens are the clients. A request without one of their secrets gets
	// 401 and nothing is read or stored.
	Tokens []Token
	// Store keeps the messages (required).
	Store *Store
	// Sender routes messages and mirrors them into Matrix (required).
	Sender Sender
	// DefaultRegion reads numbers written in national form ("US").
	DefaultRegion string
	// CheckText, when set, refuses a text the line could never send (too
	// many SMS parts); its error is the 422's reason.
	CheckText func(text string) error
	// MaxBody bounds request bodies; default DefaultMaxBody.
	MaxBody int64
	// GiveUpAfter: see DefaultGiveUpAfter.
	GiveUpAfter time.Duration
	// Retry paces the retries of a message the router could not take;
	// Attempts is ignored (GiveUpAfter bounds them). Default 5 s doubling
	// to 5 min.
	Retry fallback.RetryPolicy
	// Workers: see DefaultWorkers.
	Workers int
	// Clock is the time source; default fallback.SystemClock.
	Clock fallback.Clock
	// Log is the logger; default zap.NewNop().
	Log *zap.Logger
}

// Server is the HTTP send API: it authenticates, validates and stores
// messages, answers 202, then hands them to the router and mirrors them
// into Matrix (dispatch.go). It is an http.Handler for a listener of its
// own; Handle adds more routes (metrics, health). Create it with New,
// start its workers with Start, stop them with Stop. Safe for concurrent use.
type Server struct {
	cfg    Config
	tokens *tokenSet
	mux    *http.ServeMux
	log    *zap.Logger

	// kickRoute and kickMirror wake the dispatcher's two loops.
	kickRoute, kickMirror chan struct{}
	// loops are the routing and mirror goroutines; Stop ends them.
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New checks cfg and builds the Server; it does no I/O.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Sender == nil {
		return nil, errors.New("api: Config.Store and Config.Sender are required")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.GiveUpAfter <= 0 {
		cfg.GiveUpAfter = DefaultGiveUpAfter
	}
	if cfg.Retry.Initial == 0 {
		cfg.Retry.Initial = 5 * time.Second
	}
	if cfg.Retry.Max == 0 {
		cfg.Retry.Max = 5 * time.Minute
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Clock == nil {
		cfg.Clock = fallback.SystemClock{}
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	names := map[string]bool{}
	for _, t := range cfg.Tokens {
		if t.Name == "" || names[t.Name] || t.Secret == "" || len(t.Lines) == 0 {
			return nil, fmt.Errorf("api: token %q needs a unique name, a secret and at least one line", t.Name)
		}
		names[t.Name] = true
	}
	s := &Server{cfg: cfg, tokens: newTokenSet(cfg.Tokens), mux: http.NewServeMux(), log: cfg.Log,
		kickRoute: make(chan struct{}, 1), kickMirror: make(chan struct{}, 1)}
	s.mux.HandleFunc("POST /api/v1/messages", s.authed(s.postMessage))
	s.mux.HandleFunc("GET /api/v1/messages/{id}", s.authed(s.getMessage))
	s.mux.HandleFunc("POST /api/v1/alertmanager", s.authed(s.postAlertmanager))
	s.mux.HandleFunc("/api/", s.authed(func(w http.ResponseWriter, r *http.Request, _ *Token) {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "no such endpoint: "+r.Method+" "+r.URL.Path)
	}))
	return s, nil
}

// Handle adds a route to the API's listener (e.g. /metrics, /healthz),
// served without the API's token check. Call it before the listener serves.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// ServeHTTP serves the API and the routes added with Handle.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// authed runs h only for requests with a known token; others get 401
// before anything of the request is read.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, *Token)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := s.tokens.find(r)
		if tok == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bubbled"`)
			writeError(w, http.StatusUnauthorized, "M_UNKNOWN_TOKEN", "missing or unknown bearer token; send Authorization: Bearer <token from api.tokens>")
			return
		}
		h(w, r, tok)
	}
}

// SendRequest is the body of POST /api/v1/messages.
type SendRequest struct {
	To             string `json:"to"`
	Text           string `json:"text"`
	Route          string `json:"route,omitempty"`
	Line           string `json:"line,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// SendResponse is the body of a 202 (and of 200 for a repeated
// idempotency key).
type SendResponse struct {
	ID        string `json:"id"`
	Status    Status `json:"status"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// httpError is a refusal with its status code.
type httpError struct {
	code    int
	errcode string
	msg     string
	// retryAfter is set for 429.
	retryAfter time.Duration
}

func (e *httpError) Error() string { return e.msg }

func (s *Server) postMessage(w http.ResponseWriter, r *http.Request, tok *Token) {
	var req SendRequest
	if herr := s.readJSON(w, r, &req); herr != nil {
		writeHTTPError(w, herr)
		return
	}
	m, dup, herr := s.take(r.Context(), tok, req)
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	w.Header().Set("Location", "/api/v1/messages/"+m.ID)
	code := http.StatusAccepted
	if dup {
		code = http.StatusOK
	}
	writeJSON(w, code, SendResponse{ID: m.ID, Status: m.Status, Duplicate: dup})
}

// readJSON decodes a bounded JSON body into out.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, out any) *httpError {
	return s.decode(w, r, out, true)
}

// decode reads a JSON body of at most MaxBody bytes into out; strict
// refuses fields out does not have.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, out any, strict bool) *httpError {
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
	dec := json.NewDecoder(body)
	if strict {
		dec.DisallowUnknownFields()
	}
	err := dec.Decode(out)
	if err == nil {
		_, err = io.Copy(io.Discard, body)
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return &httpError{code: http.StatusRequestEntityTooLarge, errcode: "M_TOO_LARGE",
			msg: fmt.Sprintf("the body is larger than %d bytes; send a shorter text", s.cfg.MaxBody)}
	case err != nil:
		return &httpError{code: http.StatusBadRequest, errcode: "M_NOT_JSON",
			msg: fmt.Sprintf("the body is not the expected JSON object: %v", err)}
	}
	return nil
}

// take validates req for tok and stores it. The message is in the
// database when take returns it: a crash after that loses nothing.
func (s *Server) take(ctx context.Context, tok *Token, req SendRequest) (*Message, bool, *httpError) {
	m, herr := s.check(tok, req)
	if herr != nil {
		return nil, false, herr
	}
	return s.store(ctx, tok, m)
}

// check validates req for tok and returns the message to store.
func (s *Server) check(tok *Token, req SendRequest) (*Message, *httpError) {
	unprocessable := func(format string, args ...any) *httpError {
		return &httpError{code: http.StatusUnprocessableEntity, errcode: "M_INVALID_PARAM", msg: fmt.Sprintf(format, args...)}
	}
	forbidden := func(format string, args ...any) *httpError {
		return &httpError{code: http.StatusForbidden, errcode: "M_FORBIDDEN", msg: fmt.Sprintf(format, args...)}
	}
	to, err := phone.Parse(req.To, s.cfg.DefaultRegion)
	if err != nil {
		return nil, unprocessable("to: %v", err)
	}
	if strings.TrimSpace(req.Text) == "" {
		return nil, unprocessable("text is empty; write the message in text")
	}
	route := strings.ToLower(req.Route)
	if route == "" {
		route = string(fallback.RouteAuto)
	}
	if _, err := fallback.ParseRoute(route); err != nil {
		return nil, unprocessable("route %q is not auto, sms, rcs or matrix", req.Route)
	}
	line := tok.Lines[0]
	if req.Line != "" {
		if line, err = phone.Parse(req.Line, s.cfg.DefaultRegion); err != nil {
			return nil, unprocessable("line: %v", err)
		}
	}
	if !tok.mayUse(line) {
		return nil, forbidden("token %q may not send from line %s; it may use %s", tok.Name, line, strings.Join(tok.Lines, ", "))
	}
	if !tok.mayText(to) {
		return nil, forbidden("token %q may not text %s; add it to the token's recipients in api.tokens", tok.Name, to)
	}
	if s.cfg.CheckText != nil {
		if err := s.cfg.CheckText(req.Text); err != nil {
			return nil, unprocessable("text: %v", err)
		}
	}
	if len(req.IdempotencyKey) > 200 {
		return nil, unprocessable("idempotency_key is longer than 200 characters")
	}
	return &Message{Token: tok.Name, IdempotencyKey: req.IdempotencyKey, To: to, Text: req.Text, Route: route, Line: line}, nil
}

// store stores a checked message within the token's daily cap.
func (s *Server) store(ctx context.Context, tok *Token, msg *Message) (*Message, bool, *httpError) {
	now := s.cfg.Clock.Now().UTC()
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	m, dup, err := s.cfg.Store.put(ctx, msg, now, day, tok.DailyCap)
	switch {
	case errors.Is(err, errCapReached):
		return nil, false, &httpError{code: http.StatusTooManyRequests, errcode: "M_LIMIT_EXCEEDED",
			msg:        fmt.Sprintf("token %q has sent its %d messages of today (UTC); raise daily_cap in api.tokens or wait", tok.Name, tok.DailyCap),
			retryAfter: day.Add(24 * time.Hour).Sub(now)}
	case err != nil:
		s.log.Error("failed to store an API message", zap.String("token", tok.Name), zap.Error(err))
		return nil, false, &httpError{code: http.StatusServiceUnavailable, errcode: "M_UNKNOWN", msg: "the message could not be stored; nothing was queued, try again"}
	}
	if !dup {
		s.log.Info("took an API message", zap.String("id", m.ID), zap.String("token", tok.Name), zap.String("to", phone.Mask(m.To)), zap.String("route", m.Route))
		wake(s.kickRoute)
		wake(s.kickMirror)
	}
	return m, dup, nil
}

func (s *Server) getMessage(w http.ResponseWriter, r *http.Request, tok *Token) {
	id := r.PathValue("id")
	m, err := s.cfg.Store.Get(r.Context(), id)
	if err != nil {
		s.log.Error("failed to read an API message", zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, "M_UNKNOWN", "the message could not be read; try again")
		return
	}
	// Another token's message is as unknown as a made-up ID.
	if m == nil || m.Token != tok.Name {
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "no message "+strconv.Quote(id)+" was sent with this token")
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func writeHTTPError(w http.ResponseWriter, e *httpError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.retryAfter+time.Second-1)/time.Second)))
	}
	writeError(w, e.code, e.errcode, e.msg)
}

func writeError(w http.ResponseWriter, code int, errcode, msg string) {
	writeJSON(w, code, map[string]string{"errcode": errcode, "error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// wake signals ch without blocking.
func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
