// Package rbmfake is a loopback fake of Google's RCS Business Messaging API
// for tests and the no-hardware trial. It follows the documented shapes and
// checks what the client sends: the bearer token must come from its own
// token endpoint (JWT-bearer grant signed with the service account key it
// hands out), agentId must be the agent's, IDs must be UUIDs, JSON bodies
// may only hold known fields. It keeps a capability table, records what it
// was sent, can be told to fail, and pushes signed (or tampered) webhook
// events the way RBM does.
//
// The fake is independent of package rcs: it implements the server side on
// its own, so a shared misunderstanding cannot hide in both.
package rbmfake

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Scope is the OAuth scope the token endpoint requires.
const Scope = "https://www.googleapis.com/auth/rcsbusinessmessaging"

// MaxTextLength is RBM's limit on contentMessage.text.
const MaxTextLength = 3072

var (
	e164Re = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
)

// Options configures a fake.
type Options struct {
	// AgentID is the only agent the fake serves; default "bubbled_test_agent".
	AgentID string
	// ClientToken signs webhook pushes; default "test-client-token".
	ClientToken string
	// DuplicatesSilent makes a duplicate messageId/eventId answer 200 (as
	// the RBM docs describe) instead of 409 ALREADY_EXISTS.
	DuplicatesSilent bool
	// TokenLifetime is the expires_in of issued tokens; default 1 h.
	TokenLifetime time.Duration
}

// Failure is a scripted error answer.
type Failure struct {
	// Status is the HTTP status (429, 500, 503, 404, 401, ...). A 401
	// also invalidates the token that was used, like an expired one.
	Status int
	// RetryAfter is sent as the Retry-After header when not empty.
	RetryAfter string
	// Token makes the failure apply to the token endpoint instead of the API.
	Token bool
}

// Message is an agent message the fake accepted.
type Message struct {
	Phone, MessageID string
	Text             string
	FileURL          string // contentInfo.fileUrl
	ThumbnailURL     string // contentInfo.thumbnailUrl
	UploadedFile     string // uploadedRbmFile.fileName
	TTL, ExpireTime  string
	Revoked          bool
	Time             time.Time
}

// AgentEvent is an agent event the fake accepted.
type AgentEvent struct {
	Phone, EventID, EventType, MessageID string
	Time                                 time.Time
}

// Revocation is a DELETE of an agent message.
type Revocation struct {
	Phone, MessageID string
	// Known is whether the fake had that message.
	Known bool
}

// Server is a running fake. Safe for concurrent use.
type Server struct {
	opts  Options
	srv   *httptest.Server
	key   *rsa.PrivateKey
	keyID string
	email string

	mu            sync.Mutex
	caps          map[string][]string // reachable numbers
	tokens        map[string]bool     // valid access tokens
	tokenRequests int
	apiRequests   int
	failures      []Failure
	messages      []Message
	msgIndex      map[string]int // messageId -> index in messages
	events        []AgentEvent
	eventIDs      map[string]bool
	revocations   []Revocation
	files         map[string]string // files/<id> -> fileUrl
	media         map[string]media  // hosted user files
	rejections    []string
}

type media struct {
	mime string
	data []byte
}

// Start starts a fake on 127.0.0.1 with a fresh 2048-bit service account
// key.
func Start(opts Options) (*Server, error) {
	if opts.AgentID == "" {
		opts.AgentID = "bubbled_test_agent"
	}
	if opts.ClientToken == "" {
		opts.ClientToken = "test-client-token"
	}
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = time.Hour
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate service account key: %w", err)
	}
	s := &Server{
		opts:     opts,
		key:      key,
		keyID:    randHex(20),
		email:    "rbm-agent@bubbled-test.iam.gserviceaccount.com",
		caps:     map[string][]string{},
		tokens:   map[string]bool{},
		msgIndex: map[string]int{},
		eventIDs: map[string]bool{},
		files:    map[string]string{},
		media:    map[string]media{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.handleToken)
	mux.HandleFunc("GET /v1/phones/{phone}/capabilities", s.api(s.handleCapabilities))
	mux.HandleFunc("POST /v1/phones/{phone}/agentMessages", s.api(s.handleCreateMessage))
	mux.HandleFunc("DELETE /v1/phones/{phone}/agentMessages/{id}", s.api(s.handleDeleteMessage))
	mux.HandleFunc("POST /v1/phones/{phone}/agentEvents", s.api(s.handleCreateEvent))
	mux.HandleFunc("POST /v1/files", s.api(s.handleCreateFile))
	mux.HandleFunc("GET /media/{name}", s.handleMedia)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "NOT_FOUND", "no such RBM method: "+r.Method+" "+r.URL.Path)
	})
	s.srv = httptest.NewServer(mux)
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// URL is the API base URL (use as the RBM base URL).
func (s *Server) URL() string { return s.srv.URL }

// TokenURL is the token endpoint.
func (s *Server) TokenURL() string { return s.srv.URL + "/token" }

// AgentID returns the agent the fake serves.
func (s *Server) AgentID() string { return s.opts.AgentID }

// ClientToken returns the webhook client token.
func (s *Server) ClientToken() string { return s.opts.ClientToken }

// Client returns an HTTP client for the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// ServiceAccountJSON returns a service account key file whose token_uri is
// the fake's token endpoint.
func (s *Server) ServiceAccountJSON() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(s.key)
	if err != nil {
		panic(err)
	}
	b, _ := json.MarshalIndent(map[string]string{
		"type":           "service_account",
		"project_id":     "bubbled-test",
		"private_key_id": s.keyID,
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   s.email,
		"client_id":      "1234567890",
		"auth_uri":       "https://accounts.google.com/o/oauth2/auth",
		"token_uri":      s.TokenURL(),
	}, "", "  ")
	return b
}

// SetCapabilities makes number reachable with features.
func (s *Server) SetCapabilities(number string, features ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if features == nil {
		features = []string{}
	}
	s.caps[number] = features
}

// RemoveNumber makes number unreachable (404 everywhere).
func (s *Server) RemoveNumber(number string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.caps, number)
}

// Fail queues failures; each API (or token) request takes the next one of
// its kind.
func (s *Server) Fail(f ...Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, f...)
}

// ExpireTokens invalidates every token issued so far: the next API call
// gets 401 UNAUTHENTICATED.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// TokenRequests counts successful token grants.
func (s *Server) TokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenRequests
}

// APIRequests counts API requests (including refused ones).
func (s *Server) APIRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apiRequests
}

// Messages returns the accepted agent messages in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// AgentEvents returns the accepted agent events in order.
func (s *Server) AgentEvents() []AgentEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]AgentEvent(nil), s.events...)
}

// Revocations returns the DELETEs in order.
func (s *Server) Revocations() []Revocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Revocation(nil), s.revocations...)
}

// Rejections returns why the fake refused requests (for test failure
// messages).
func (s *Server) Rejections() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.rejections...)
}

// HostFile serves data at a fake-hosted URL, for userFile fileUri.
func (s *Server) HostFile(data []byte, mime string) string {
	name := randHex(8)
	s.mu.Lock()
	s.media[name] = media{mime: mime, data: data}
	s.mu.Unlock()
	return s.srv.URL + "/media/" + name
}

// --- API handlers ---

// googleError writes a google.rpc.Status error.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, code int, status, msg string) {
	s.mu.Lock()
	s.rejections = append(s.rejections, fmt.Sprintf("%s %s: %d %s: %s", r.Method, r.URL.Path, code, status, msg))
	s.mu.Unlock()
	writeJSON(w, code, map[string]any{"error": map[string]any{"code": code, "message": msg, "status": status}})
}

var statusNames = map[int]string{
	400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
	409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}

// api wraps an API handler with authentication, agentId and scripted
// failures.
func (s *Server) api(next func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.apiRequests++
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		valid := ok && s.tokens[tok]
		var f *Failure
		if valid {
			for i, x := range s.failures {
				if !x.Token {
					f = &x
					s.failures = append(s.failures[:i:i], s.failures[i+1:]...)
					break
				}
			}
			if f != nil && f.Status == http.StatusUnauthorized {
				delete(s.tokens, tok)
			}
		}
		s.mu.Unlock()
		if !valid {
			s.fail(w, r, 401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token.")
			return
		}
		if f != nil {
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			name := statusNames[f.Status]
			if name == "" {
				name = "UNKNOWN"
			}
			s.fail(w, r, f.Status, name, "scripted failure")
			return
		}
		if agent := r.URL.Query().Get("agentId"); agent == "" {
			s.fail(w, r, 400, "INVALID_ARGUMENT", "agentId is required")
			return
		} else if agent != s.opts.AgentID {
			s.fail(w, r, 403, "PERMISSION_DENIED", "The caller does not have permission for agent "+agent)
			return
		}
		if p := r.PathValue("phone"); p != "" && !e164Re.MatchString(p) {
			s.fail(w, r, 400, "INVALID_ARGUMENT", "phone number must be E.164 with a leading +")
			return
		}
		next(w, r)
	}
}

func (s *Server) reachable(phone string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.caps[phone]
	return ok
}

func (s *Server) handleCapabilities(w http.ResponseWriter, r *http.Request) {
	if !uuidRe.MatchString(r.URL.Query().Get("requestId")) {
		s.fail(w, r, 400, "INVALID_ARGUMENT", "requestId must be a UUID")
		return
	}
	phone := r.PathValue("phone")
	s.mu.Lock()
	features, ok := s.caps[phone]
	s.mu.Unlock()
	if !ok {
		s.fail(w, r, 404, "NOT_FOUND", "Requested entity was not found.")
		return
	}
	writeJSON(w, 200, map[string]any{"features": features})
}

// agentMessage mirrors AgentMessage (input fields).
type agentMessage struct {
	ContentMessage *struct {
		Text            *string `json:"text"`
		FileName        *string `json:"fileName"`
		UploadedRbmFile *struct {
			FileName      string `json:"fileName"`
			ThumbnailName string `json:"thumbnailName"`
		} `json:"uploadedRbmFile"`
		ContentInfo *struct {
			FileURL      string `json:"fileUrl"`
			ThumbnailURL string `json:"thumbnailUrl"`
			ForceRefresh bool   `json:"forceRefresh"`
		} `json:"contentInfo"`
		RichCard    json.RawMessage   `json:"richCard"`
		Suggestions []json.RawMessage `json:"suggestions"`
	} `json:"contentMessage"`
	TTL                string `json:"ttl"`
	ExpireTime         string `json:"expireTime"`
	MessageTrafficType string `json:"messageTrafficType"`
}

var ttlRe = regexp.MustCompile(`^[0-9]+(\.[0-9]{1,9})?s$`)

func (s *Server) handleCreateMessage(w http.ResponseWriter, r *http.Request) {
	phone := r.PathValue("phone")
	id := r.URL.Query().Get("messageId")
	if !uuidRe.MatchString(id) {
		s.fail(w, r, 400, "INVALID_ARGUMENT", "messageId must be a UUID (bubbled derives it from the Matrix event ID)")
		return
	}
	var m agentMessage
	if err := decodeStrict(r.Body, &m); err != nil {
		s.fail(w, r, 400, "INVALID_ARGUMENT", "Invalid JSON payload received. "+err.Error())
		return
	}
	cm := m.ContentMessage
	if cm == nil {
		s.fail(w, r, 400, "INVALID_ARGUMENT", "contentMessage is required")
		return
	}
	n := 0
	for _, set := range []bool{cm.Text != nil, cm.FileName != nil, cm.UploadedRbmFile != nil, cm.ContentInfo != nil, cm.RichCard != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		s.fail(w, r, 400, "INVALID_ARGUMENT", "contentMessage must have exactly one of text, fileName, uploadedRbmFile, contentInfo, richCard")
		return
	}
	rec := Message{Phone: phone, MessageID: id, TTL: m.TTL, ExpireTime: m.ExpireTime, Time: time.Now()}
	switch {
	case cm.Text != nil:
		if *cm.Text == "" || utf8.RuneCountInString(*cm.Text) > MaxTextLength {
			s.fail(w, r, 400, "INVALID_ARGUMENT", "text must have 1 to 3072 characters")
			return
		}
		rec.Text = *cm.Text
	case cm.ContentInfo != nil:
		if !strings.HasPrefix(cm.ContentInfo.FileURL, "http://") && !strings.HasPrefix(cm.ContentInfo.FileURL, "https://") {
			s.fail(w, r, 400, "INVALID_ARGUMENT", "contentInfo.fileUrl must be a public URL")
			return
		}
		rec.FileURL, rec.ThumbnailURL = cm.ContentInfo.FileURL, cm.ContentInfo.ThumbnailURL
	case cm.UploadedRbmFile != nil:
		s.mu.Lock()
		_, known := s.files[cm.UploadedRbmFile.FileName]
		s.mu.Unlock()
		if !known {
			s.fail(w, r, 400, "INVALID_ARGUMENT", "uploadedRbmFile.fileName is not a file of this agent")
			return
		}
		rec.UploadedFile = cm.UploadedRbmFile.FileName
	}
	if m.TTL != "" && m.ExpireTime != "" {
		s.fail(w, r, 400, "INVALID_ARGUMENT", "only one of ttl and expireTime")
		return
	}
	if m.TTL != "" && !ttlRe.MatchString(m.TTL) {
		s.fail(w, r, 400, "INVALID_ARGUMENT", "ttl must be a google.protobuf.Duration like \"3600s\"")
		return
	}
	s.mu.Lock()
	_, reachable := s.caps[phone]
	_, dup := s.msgIndex[id]
	dup = dup || s.eventIDs[id]
	if reachable && !dup {
		s.msgIndex[id] = len(s.messages)
		s.messages = append(s.messages, rec)
	}
	s.mu.Unlock()
	switch {
	case !reachable:
		s.fail(w, r, 404, "NOT_FOUND", "Requested entity was not found.")
	case dup && !s.opts.DuplicatesSilent:
		s.fail(w, r, 409, "ALREADY_EXISTS", "Requested entity already exists")
	default:
		writeJSON(w, 200, map[string]any{
			"name":           "phones/" + phone + "/agentMessages/" + id,
			"sendTime":       rec.Time.UTC().Format(time.RFC3339Nano),
			"contentMessage": m.ContentMessage,
		})
	}
}

func (s *Server) handleDeleteMessage(w http.ResponseWriter, r *http.Request) {
	phone, id := r.PathValue("phone"), r.PathValue("id")
	s.mu.Lock()
	i, known := s.msgIndex[id]
	known = known && s.messages[i].Phone == phone
	if known {
		s.messages[i].Revoked = true
	}
	s.revocations = append(s.revocations, Revocation{Phone: phone, MessageID: id, Known: known})
	s.mu.Unlock()
	writeJSON(w, 200, map[string]any{})
}

func (s *Server) handleCreateEvent(w http.ResponseWriter, r *http.Request) {
	phone := r.PathValue("phone")
	id := r.URL.Query().Get("eventId")
	if !uuidRe.MatchString(id) {
		s.fail(w, r, 400, "INVALID_ARGUMENT", "eventId must be a UUID")
		return
	}
	var ev struct {
		EventType string `json:"eventType"`
		MessageID string `json:"messageId"`
	}
	if err := decodeStrict(r.Body, &ev); err != nil {
		s.fail(w, r, 400, "INVALID_ARGUMENT", "Invalid JSON payload received. "+err.Error())
		return
	}
	switch ev.EventType {
	case "READ":
		if ev.MessageID == "" {
			s.fail(w, r, 400, "INVALID_ARGUMENT", "READ needs messageId")
			return
		}
	case "IS_TYPING":
		if ev.MessageID != "" {
			s.fail(w, r, 400, "INVALID_ARGUMENT", "IS_TYPING takes no messageId")
			return
		}
	default:
		s.fail(w, r, 400, "INVALID_ARGUMENT", fmt.Sprintf("eventType %q is not READ or IS_TYPING", ev.EventType))
		return
	}
	s.mu.Lock()
	_, reachable := s.caps[phone]
	_, dupMsg := s.msgIndex[id]
	dup := s.eventIDs[id] || dupMsg
	if reachable && !dup {
		s.eventIDs[id] = true
		s.events = append(s.events, AgentEvent{Phone: phone, EventID: id, EventType: ev.EventType, MessageID: ev.MessageID, Time: time.Now()})
	}
	s.mu.Unlock()
	switch {
	case !reachable:
		s.fail(w, r, 404, "NOT_FOUND", "Requested entity was not found.")
	case dup && !s.opts.DuplicatesSilent:
		s.fail(w, r, 409, "ALREADY_EXISTS", "Requested entity already exists")
	default:
		writeJSON(w, 200, map[string]any{
			"name": "phones/" + phone + "/agentEvents/" + id, "eventType": ev.EventType,
			"messageId": ev.MessageID, "sendTime": time.Now().UTC().Format(time.RFC3339Nano),
		})
	}
}

func (s *Server) handleCreateFile(w http.ResponseWriter, r *http.Request) {
	var req struct {
		FileURL      string `json:"fileUrl"`
		ThumbnailURL string `json:"thumbnailUrl"`
	}
	if err := decodeStrict(r.Body, &req); err != nil {
		s.fail(w, r, 400, "INVALID_ARGUMENT", "Invalid JSON payload received. "+err.Error())
		return
	}
	if !strings.HasPrefix(req.FileURL, "http://") && !strings.HasPrefix(req.FileURL, "https://") {
		s.fail(w, r, 400, "INVALID_ARGUMENT", "fileUrl must be a public URL")
		return
	}
	name := "files/" + randHex(12)
	s.mu.Lock()
	s.files[name] = req.FileURL
	s.mu.Unlock()
	writeJSON(w, 200, map[string]any{"name": name})
}

func (s *Server) handleMedia(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	m, ok := s.media[r.PathValue("name")]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", m.mime)
	_, _ = w.Write(m.data)
}

// --- token endpoint ---

func (s *Server) tokenError(w http.ResponseWriter, r *http.Request, code int, errCode, desc string) {
	s.mu.Lock()
	s.rejections = append(s.rejections, fmt.Sprintf("token: %d %s: %s", code, errCode, desc))
	s.mu.Unlock()
	writeJSON(w, code, map[string]string{"error": errCode, "error_description": desc})
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	var f *Failure
	for i, x := range s.failures {
		if x.Token {
			f = &x
			s.failures = append(s.failures[:i:i], s.failures[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	if f != nil {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		s.tokenError(w, r, f.Status, "scripted_failure", "scripted failure")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.tokenError(w, r, 400, "invalid_request", err.Error())
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		s.tokenError(w, r, 400, "unsupported_grant_type", "grant_type "+gt)
		return
	}
	if err := s.checkAssertion(r.PostForm.Get("assertion")); err != nil {
		s.tokenError(w, r, 400, "invalid_grant", err.Error())
		return
	}
	tok := "ya29.fake-" + randHex(16)
	s.mu.Lock()
	s.tokens[tok] = true
	s.tokenRequests++
	s.mu.Unlock()
	writeJSON(w, 200, map[string]any{
		"access_token": tok, "token_type": "Bearer", "expires_in": int(s.opts.TokenLifetime / time.Second),
	})
}

// checkAssertion verifies the RS256 JWT of the JWT-bearer grant.
func (s *Server) checkAssertion(jwt string) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return errors.New("assertion is not a JWT")
	}
	var hdr struct {
		Alg, Typ, Kid string
	}
	if err := decodeSegment(parts[0], &hdr); err != nil {
		return fmt.Errorf("JWT header: %w", err)
	}
	if hdr.Alg != "RS256" {
		return fmt.Errorf("JWT alg %q is not RS256", hdr.Alg)
	}
	if hdr.Kid != s.keyID {
		return fmt.Errorf("JWT kid %q is not the service account's key ID", hdr.Kid)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return errors.New("JWT signature is not base64url")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&s.key.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		return errors.New("JWT signature does not verify with the service account key")
	}
	var claims struct {
		Iss   string `json:"iss"`
		Scope string `json:"scope"`
		Aud   string `json:"aud"`
		Iat   int64  `json:"iat"`
		Exp   int64  `json:"exp"`
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return fmt.Errorf("JWT claims: %w", err)
	}
	now := time.Now().Unix()
	switch {
	case claims.Iss != s.email:
		return fmt.Errorf("iss %q is not the service account", claims.Iss)
	case !containsWord(claims.Scope, Scope):
		return fmt.Errorf("scope %q lacks %s", claims.Scope, Scope)
	case claims.Aud != s.TokenURL():
		return fmt.Errorf("aud %q is not the token URL", claims.Aud)
	case claims.Exp <= now || claims.Exp-claims.Iat > 3600+60:
		return errors.New("JWT expired or lives longer than 1 h")
	case claims.Iat > now+60:
		return errors.New("JWT issued in the future")
	}
	return nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return errors.New("not base64url")
	}
	return json.Unmarshal(b, v)
}

func containsWord(list, w string) bool {
	for _, f := range strings.Fields(list) {
		if f == w {
			return true
		}
	}
	return false
}

// --- webhook pushes ---

// Signing says how a push is signed.
type Signing int

const (
	// Signed is a correct X-Goog-Signature.
	Signed Signing = iota
	// Tampered signs the original data, then changes one byte of it.
	Tampered
	// WrongKey signs with a key other than the client token.
	WrongKey
	// Unsigned sends no X-Goog-Signature.
	Unsigned
)

// Sign returns X-Goog-Signature for data: base64(HMAC-SHA512(key, data)).
func Sign(key string, data []byte) string {
	mac := hmac.New(sha512.New, []byte(key))
	mac.Write(data)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// PushResult is the webhook's answer to a push.
type PushResult struct {
	Status int
	Body   string
}

// Push posts data (a UserMessage or UserEvent JSON) to url in a Pub/Sub
// push envelope, signed per sign.
func (s *Server) Push(ctx context.Context, url string, data []byte, sign Signing) (PushResult, error) {
	sig := Sign(s.opts.ClientToken, data)
	switch sign {
	case Tampered:
		data = bytes.Clone(data)
		i := bytes.LastIndexByte(data, '"') - 1
		if i < 0 {
			i = len(data) - 1
		}
		data[i] ^= 0x01
	case WrongKey:
		sig = Sign("not-"+s.opts.ClientToken, data)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	msgID := strconv.FormatInt(time.Now().UnixNano(), 10)
	env, _ := json.Marshal(map[string]any{
		"message": map[string]any{
			"data":         base64.StdEncoding.EncodeToString(data),
			"messageId":    msgID,
			"message_id":   msgID,
			"publishTime":  now,
			"publish_time": now,
		},
		"subscription": "projects/rbm-" + s.opts.AgentID + "/subscriptions/rbm-agent-subscription",
	})
	hdr := http.Header{}
	if sign != Unsigned {
		hdr.Set("X-Goog-Signature", sig)
	}
	return post(ctx, url, env, hdr)
}

// PushRaw posts body as is, with X-Goog-Signature sig if not empty.
func (s *Server) PushRaw(ctx context.Context, url string, body []byte, sig string) (PushResult, error) {
	hdr := http.Header{}
	if sig != "" {
		hdr.Set("X-Goog-Signature", sig)
	}
	return post(ctx, url, body, hdr)
}

// UserMessage builds a UserMessage text payload; it returns the JSON and
// the message ID.
func (s *Server) UserMessage(from, text string) ([]byte, string) {
	id := "MsG" + randHex(10)
	b, _ := json.Marshal(map[string]any{
		"senderPhoneNumber": from, "messageId": id, "agentId": s.opts.AgentID,
		"sendTime": time.Now().UTC().Format(time.RFC3339Nano), "text": text,
	})
	return b, id
}

// UserFile builds a UserMessage file payload pointing at fileURL.
func (s *Server) UserFile(from, fileURL, name, mime string, size int) ([]byte, string) {
	id := "MsG" + randHex(10)
	b, _ := json.Marshal(map[string]any{
		"senderPhoneNumber": from, "messageId": id, "agentId": s.opts.AgentID,
		"sendTime": time.Now().UTC().Format(time.RFC3339Nano),
		"userFile": map[string]any{"payload": map[string]any{
			"mimeType": mime, "fileSizeBytes": size, "fileName": name, "fileUri": fileURL,
		}},
	})
	return b, id
}

// UserEvent builds a UserEvent payload (DELIVERED, READ, IS_TYPING,
// SUBSCRIBE, UNSUBSCRIBE); messageID is the agent message for DELIVERED and
// READ. It returns the JSON and the event ID.
func (s *Server) UserEvent(from, eventType, messageID string) ([]byte, string) {
	id := "EvT" + randHex(10)
	m := map[string]any{
		"senderPhoneNumber": from, "eventType": eventType, "eventId": id, "agentId": s.opts.AgentID,
		"sendTime": time.Now().UTC().Format(time.RFC3339Nano),
	}
	if messageID != "" {
		m["messageId"] = messageID
	}
	b, _ := json.Marshal(m)
	return b, id
}

// PushUserMessage pushes a signed text message from from.
func (s *Server) PushUserMessage(ctx context.Context, url, from, text string) (string, PushResult, error) {
	data, id := s.UserMessage(from, text)
	res, err := s.Push(ctx, url, data, Signed)
	return id, res, err
}

// PushUserEvent pushes a signed user event.
func (s *Server) PushUserEvent(ctx context.Context, url, from, eventType, messageID string) (string, PushResult, error) {
	data, id := s.UserEvent(from, eventType, messageID)
	res, err := s.Push(ctx, url, data, Signed)
	return id, res, err
}

// Handshake performs the webhook registration handshake with clientToken
// and secret; a correct webhook answers 200 with secret as the body.
func (s *Server) Handshake(ctx context.Context, url, clientToken, secret string) (PushResult, error) {
	body, _ := json.Marshal(map[string]string{"clientToken": clientToken, "secret": secret})
	return post(ctx, url, body, nil)
}

func post(ctx context.Context, url string, body []byte, hdr http.Header) (PushResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return PushResult{}, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Google-Cloud-Pub/Sub (rbmfake)")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return PushResult{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return PushResult{Status: resp.StatusCode, Body: string(b)}, nil
}

// --- helpers ---

func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(io.LimitReader(r, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
