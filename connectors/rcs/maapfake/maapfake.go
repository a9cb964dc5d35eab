// Package maapfake is a loopback fake of a GSMA MaaP chatbot platform
// (FNW.11 chatbot API) for tests and the no-hardware trial. It serves a
// client-credentials token endpoint and the bot API below
// /bot/{version}/{botId}, checks what the client sends (bearer token from
// its own endpoint, the bot ID, E.164 contacts, msgIds, only known JSON
// fields), answers errors in the OMA RequestError shape, keeps a capability
// table, records what it was sent, can be told to fail, and pushes signed
// (or tampered) webhook events.
//
// The fake is independent of package rcs: it implements the server side on
// its own.
package maapfake

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

var e164Re = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// Options configures a fake.
type Options struct {
	// BotID is the only bot served; default "bubbled-bot@botplatform.example".
	BotID string
	// APIVersion is the path version; default "v1".
	APIVersion string
	// ClientID and ClientSecret are the accepted client credentials;
	// defaults "bubbled-client" and "bubbled-client-secret".
	ClientID, ClientSecret string
	// WebhookSecret signs pushes; default "test-webhook-secret".
	WebhookSecret string
	// WebhookAuth is "hmac-sha256" (default) or "bearer".
	WebhookAuth string
	// SignatureHeader carries the HMAC; default "X-Signature".
	SignatureHeader string
	// SignatureBase64 encodes the HMAC in base64 instead of hex.
	SignatureBase64 bool
}

// Failure is a scripted error answer.
type Failure struct {
	// Status is the HTTP status; a 401 also invalidates the token used.
	Status int
	// RetryAfter is sent as Retry-After when not empty.
	RetryAfter string
	// Token makes it apply to the token endpoint.
	Token bool
}

// Message is an accepted bot message (text or file).
type Message struct {
	Contact, MsgID string
	Text           string
	FileURL        string
	FileName       string
	FileMIMEType   string
	FileSize       int64
	ThumbnailURL   string
	// Status is "pending", "delivered", "displayed" or "cancelled".
	Status string
	Time   time.Time
}

// Typing is an accepted isTyping message.
type Typing struct {
	Contact, State string
}

// StatusUpdate is an accepted PUT messages/{msgId}/status.
type StatusUpdate struct {
	MsgID, Status string
}

// Server is a running fake. Safe for concurrent use.
type Server struct {
	opts Options
	srv  *httptest.Server

	mu            sync.Mutex
	caps          map[string][]string
	tokens        map[string]bool
	tokenRequests int
	apiRequests   int
	failures      []Failure
	messages      []Message
	msgIndex      map[string]int
	typing        []Typing
	statuses      []StatusUpdate
	inbound       map[string]string // user msgId -> contact
	rejections    []string
}

// Start starts a fake on 127.0.0.1.
func Start(opts Options) (*Server, error) {
	if opts.BotID == "" {
		opts.BotID = "bubbled-bot@botplatform.example"
	}
	if opts.APIVersion == "" {
		opts.APIVersion = "v1"
	}
	if opts.ClientID == "" {
		opts.ClientID = "bubbled-client"
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = "bubbled-client-secret"
	}
	if opts.WebhookSecret == "" {
		opts.WebhookSecret = "test-webhook-secret"
	}
	if opts.WebhookAuth == "" {
		opts.WebhookAuth = "hmac-sha256"
	}
	if opts.SignatureHeader == "" {
		opts.SignatureHeader = "X-Signature"
	}
	s := &Server{
		opts:     opts,
		caps:     map[string][]string{},
		tokens:   map[string]bool{},
		msgIndex: map[string]int{},
		inbound:  map[string]string{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/token", s.handleToken)
	mux.HandleFunc("GET /bot/{version}/{bot}/contactCapabilities", s.api(s.handleCapabilities))
	mux.HandleFunc("POST /bot/{version}/{bot}/messages", s.api(s.handleMessages))
	mux.HandleFunc("PUT /bot/{version}/{bot}/messages/{msgId}/status", s.api(s.handleStatus))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, 404, "SVC0004", "no such resource: "+r.Method+" "+r.URL.Path)
	})
	s.srv = httptest.NewServer(mux)
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// URL is the server root (the MaaP base URL).
func (s *Server) URL() string { return s.srv.URL }

// TokenURL is the client-credentials token endpoint.
func (s *Server) TokenURL() string { return s.srv.URL + "/oauth2/token" }

// BotID returns the bot served.
func (s *Server) BotID() string { return s.opts.BotID }

// ClientID returns the accepted client ID.
func (s *Server) ClientID() string { return s.opts.ClientID }

// ClientSecret returns the accepted client secret.
func (s *Server) ClientSecret() string { return s.opts.ClientSecret }

// WebhookSecret returns the secret pushes are signed with.
func (s *Server) WebhookSecret() string { return s.opts.WebhookSecret }

// SetCapabilities makes number an RCS user with capabilities (e.g. "chat",
// "chatBotCommunication", "fileTransfer").
func (s *Server) SetCapabilities(number string, capabilities ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if capabilities == nil {
		capabilities = []string{}
	}
	s.caps[number] = capabilities
}

// RemoveNumber makes number a non-RCS user (404).
func (s *Server) RemoveNumber(number string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.caps, number)
}

// Fail queues failures; each API (or token) request takes the next of its
// kind.
func (s *Server) Fail(f ...Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, f...)
}

// ExpireTokens invalidates every token issued so far.
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

// APIRequests counts API requests.
func (s *Server) APIRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apiRequests
}

// Messages returns accepted text/file messages in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// Typing returns accepted isTyping messages in order.
func (s *Server) Typing() []Typing {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Typing(nil), s.typing...)
}

// StatusUpdates returns accepted status PUTs in order.
func (s *Server) StatusUpdates() []StatusUpdate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]StatusUpdate(nil), s.statuses...)
}

// Rejections returns why the fake refused requests.
func (s *Server) Rejections() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.rejections...)
}

// MarkDelivered sets a bot message to delivered, so a later cancel fails.
func (s *Server) MarkDelivered(msgID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.msgIndex[msgID]; ok {
		s.messages[i].Status = "delivered"
	}
}

// --- API ---

// fail writes an OMA-style RequestError (the shape GSMA APIs inherit:
// ServiceException SVCxxxx for bad input, PolicyException POLxxxx for
// refusals).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, code int, id, text string) {
	s.mu.Lock()
	s.rejections = append(s.rejections, fmt.Sprintf("%s %s: %d %s: %s", r.Method, r.URL.Path, code, id, text))
	s.mu.Unlock()
	kind := "ServiceException"
	if strings.HasPrefix(id, "POL") {
		kind = "PolicyException"
	}
	writeJSON(w, code, map[string]any{"RequestError": map[string]any{kind: map[string]any{"messageId": id, "text": text}}})
}

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
			s.fail(w, r, 401, "POL0001", "missing or invalid access token")
			return
		}
		if f != nil {
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			s.fail(w, r, f.Status, "SVC1000", "scripted failure")
			return
		}
		if r.PathValue("version") != s.opts.APIVersion {
			s.fail(w, r, 404, "SVC0004", "unknown API version "+r.PathValue("version"))
			return
		}
		if r.PathValue("bot") != s.opts.BotID {
			s.fail(w, r, 403, "POL1001", "token does not belong to bot "+r.PathValue("bot"))
			return
		}
		next(w, r)
	}
}

func (s *Server) handleCapabilities(w http.ResponseWriter, r *http.Request) {
	contact := r.URL.Query().Get("userContact")
	if !e164Re.MatchString(contact) {
		s.fail(w, r, 400, "SVC0002", "userContact must be E.164 with a leading +")
		return
	}
	s.mu.Lock()
	caps, ok := s.caps[contact]
	s.mu.Unlock()
	if !ok {
		s.fail(w, r, 404, "SVC0004", "user is not RCS enabled")
		return
	}
	writeJSON(w, 200, map[string]any{"capabilities": caps})
}

type rcsMessageBody struct {
	RCSMessage *struct {
		MsgID       string  `json:"msgId"`
		TextMessage *string `json:"textMessage"`
		FileMessage *struct {
			FileURL      string `json:"fileUrl"`
			FileName     string `json:"fileName"`
			FileMIMEType string `json:"fileMIMEType"`
			FileSize     int64  `json:"fileSize"`
			ThumbnailURL string `json:"thumbnailUrl"`
		} `json:"fileMessage"`
		IsTyping          string          `json:"isTyping"`
		Status            string          `json:"status"`
		SuggestedChipList json.RawMessage `json:"suggestedChipList"`
	} `json:"RCSMessage"`
	MessageContact *struct {
		UserContact string `json:"userContact"`
		ChatID      string `json:"chatId"`
	} `json:"messageContact"`
}

var uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request) {
	var b rcsMessageBody
	if err := decodeStrict(r.Body, &b); err != nil {
		s.fail(w, r, 400, "SVC0001", "invalid JSON: "+err.Error())
		return
	}
	if b.RCSMessage == nil || b.MessageContact == nil {
		s.fail(w, r, 400, "SVC0002", "RCSMessage and messageContact are required")
		return
	}
	m, contact := b.RCSMessage, b.MessageContact.UserContact
	if !e164Re.MatchString(contact) {
		s.fail(w, r, 400, "SVC0002", "messageContact.userContact must be E.164 with a leading +")
		return
	}
	n := 0
	for _, set := range []bool{m.TextMessage != nil, m.FileMessage != nil, m.IsTyping != ""} {
		if set {
			n++
		}
	}
	if n != 1 || m.Status != "" {
		s.fail(w, r, 400, "SVC0002", "RCSMessage must have exactly one of textMessage, fileMessage, isTyping")
		return
	}
	if !s.reachable(contact) {
		s.fail(w, r, 404, "SVC0004", "user is not RCS enabled")
		return
	}
	if m.IsTyping != "" {
		if m.IsTyping != "active" && m.IsTyping != "idle" {
			s.fail(w, r, 400, "SVC0002", "isTyping must be active or idle")
			return
		}
		s.mu.Lock()
		s.typing = append(s.typing, Typing{Contact: contact, State: m.IsTyping})
		s.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if !uuidRe.MatchString(m.MsgID) {
		s.fail(w, r, 400, "SVC0002", "msgId must be a UUID (bubbled derives it from the Matrix event ID)")
		return
	}
	rec := Message{Contact: contact, MsgID: m.MsgID, Status: "pending", Time: time.Now()}
	if m.TextMessage != nil {
		if *m.TextMessage == "" || utf8.RuneCountInString(*m.TextMessage) > 3072 {
			s.fail(w, r, 400, "SVC0002", "textMessage must have 1 to 3072 characters")
			return
		}
		rec.Text = *m.TextMessage
	} else {
		f := m.FileMessage
		if !strings.HasPrefix(f.FileURL, "http://") && !strings.HasPrefix(f.FileURL, "https://") {
			s.fail(w, r, 400, "SVC0002", "fileMessage.fileUrl must be a URL")
			return
		}
		rec.FileURL, rec.FileName, rec.FileMIMEType, rec.FileSize, rec.ThumbnailURL = f.FileURL, f.FileName, f.FileMIMEType, f.FileSize, f.ThumbnailURL
	}
	s.mu.Lock()
	_, dup := s.msgIndex[m.MsgID]
	if !dup {
		s.msgIndex[m.MsgID] = len(s.messages)
		s.messages = append(s.messages, rec)
	}
	s.mu.Unlock()
	if dup {
		s.fail(w, r, 409, "SVC0005", "msgId "+m.MsgID+" already exists")
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"RCSMessage": map[string]any{"msgId": m.MsgID, "status": "pending"}})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("msgId")
	var b rcsMessageBody
	if err := decodeStrict(r.Body, &b); err != nil {
		s.fail(w, r, 400, "SVC0001", "invalid JSON: "+err.Error())
		return
	}
	if b.RCSMessage == nil || b.RCSMessage.TextMessage != nil || b.RCSMessage.FileMessage != nil || b.RCSMessage.IsTyping != "" {
		s.fail(w, r, 400, "SVC0002", "status update takes only RCSMessage.status")
		return
	}
	st := b.RCSMessage.Status
	code, errID, text := s.applyStatus(id, st)
	if code != 0 {
		s.fail(w, r, code, errID, text)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// applyStatus records a status update, or returns the error to answer.
func (s *Server) applyStatus(id, st string) (int, string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case "displayed":
		if _, ok := s.inbound[id]; !ok {
			return 404, "SVC0004", "no user message " + id
		}
	case "cancelled":
		i, ok := s.msgIndex[id]
		if !ok {
			return 404, "SVC0004", "no bot message " + id
		}
		if s.messages[i].Status != "pending" {
			return 409, "POL2001", "message " + id + " is already " + s.messages[i].Status
		}
		s.messages[i].Status = "cancelled"
	default:
		return 400, "SVC0002", "status must be displayed or cancelled"
	}
	s.statuses = append(s.statuses, StatusUpdate{MsgID: id, Status: st})
	return 0, "", ""
}

func (s *Server) reachable(contact string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.caps[contact]
	return ok
}

// --- token endpoint ---

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
	tokenErr := func(code int, errCode, desc string) {
		s.mu.Lock()
		s.rejections = append(s.rejections, fmt.Sprintf("token: %d %s: %s", code, errCode, desc))
		s.mu.Unlock()
		writeJSON(w, code, map[string]string{"error": errCode, "error_description": desc})
	}
	if f != nil {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		tokenErr(f.Status, "scripted_failure", "scripted failure")
		return
	}
	if err := r.ParseForm(); err != nil {
		tokenErr(400, "invalid_request", err.Error())
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		tokenErr(400, "unsupported_grant_type", "grant_type "+gt)
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if subtle.ConstantTimeCompare([]byte(id), []byte(s.opts.ClientID)) != 1 ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(s.opts.ClientSecret)) != 1 {
		tokenErr(401, "invalid_client", "unknown client or wrong secret")
		return
	}
	tok := "maap-" + randHex(16)
	s.mu.Lock()
	s.tokens[tok] = true
	s.tokenRequests++
	s.mu.Unlock()
	writeJSON(w, 200, map[string]any{"access_token": tok, "token_type": "bearer", "expires_in": 3600})
}

// --- webhook pushes ---

// Signing says how a push is authenticated.
type Signing int

const (
	// Signed is correct.
	Signed Signing = iota
	// Tampered signs the original body, then changes one byte.
	Tampered
	// WrongKey signs with another secret.
	WrongKey
	// Unsigned sends no signature/Authorization.
	Unsigned
)

// Sign returns the hex (or base64) HMAC-SHA256 of body with key.
func Sign(key string, body []byte, b64 bool) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(body)
	if b64 {
		return base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	return hex.EncodeToString(mac.Sum(nil))
}

// PushResult is the webhook's answer.
type PushResult struct {
	Status int
	Body   string
}

// Push posts body to url, authenticated per the fake's WebhookAuth and sign.
func (s *Server) Push(ctx context.Context, url string, body []byte, sign Signing) (PushResult, error) {
	key := s.opts.WebhookSecret
	if sign == WrongKey {
		key = "not-" + key
	}
	hdr := http.Header{}
	if sign != Unsigned {
		if s.opts.WebhookAuth == "bearer" {
			hdr.Set("Authorization", "Bearer "+key)
		} else {
			hdr.Set(s.opts.SignatureHeader, Sign(key, body, s.opts.SignatureBase64))
		}
	}
	if sign == Tampered {
		body = bytes.Clone(body)
		i := bytes.LastIndexByte(body, '"') - 1
		if i < 0 {
			i = len(body) - 1
		}
		body[i] ^= 0x01
		if s.opts.WebhookAuth == "bearer" {
			// A bearer token does not cover the body; tampering cannot be
			// detected, so send no credentials to keep the case meaningful.
			hdr.Del("Authorization")
		}
	}
	return post(ctx, url, body, hdr)
}

func event(kind, contact string, msg map[string]any) []byte {
	if _, ok := msg["timestamp"]; !ok {
		msg["timestamp"] = time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	}
	b, _ := json.Marshal(map[string]any{"RCSMessage": msg, "messageContact": map[string]any{"userContact": contact}, "event": kind})
	return b
}

// UserMessage builds a "message" event with text from contact and
// remembers its msgId for read receipts.
func (s *Server) UserMessage(contact, text string) ([]byte, string) {
	id := randHex(6)
	s.mu.Lock()
	s.inbound[id] = contact
	s.mu.Unlock()
	return event("message", contact, map[string]any{"msgId": id, "textMessage": text}), id
}

// UserFile builds a "message" event with a fileMessage.
func (s *Server) UserFile(contact, fileURL, name, mime string, size int) ([]byte, string) {
	id := randHex(6)
	s.mu.Lock()
	s.inbound[id] = contact
	s.mu.Unlock()
	return event("message", contact, map[string]any{"msgId": id, "fileMessage": map[string]any{
		"fileUrl": fileURL, "fileName": name, "fileMIMEType": mime, "fileSize": size,
	}}), id
}

// StatusEvent builds a "messageStatus" event (delivered, displayed, failed)
// for a bot message.
func (s *Server) StatusEvent(contact, msgID, status string) []byte {
	return event("messageStatus", contact, map[string]any{"msgId": msgID, "status": status})
}

// TypingEvent builds an "isTyping" event.
func (s *Server) TypingEvent(contact string, active bool) []byte {
	state := "idle"
	if active {
		state = "active"
	}
	return event("isTyping", contact, map[string]any{"isTyping": state})
}

// PushUserMessage pushes a signed text message and returns its msgId.
func (s *Server) PushUserMessage(ctx context.Context, url, contact, text string) (string, PushResult, error) {
	b, id := s.UserMessage(contact, text)
	res, err := s.Push(ctx, url, b, Signed)
	return id, res, err
}

// PushStatus pushes a signed messageStatus event.
func (s *Server) PushStatus(ctx context.Context, url, contact, msgID, status string) (PushResult, error) {
	return s.Push(ctx, url, s.StatusEvent(contact, msgID, status), Signed)
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
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
