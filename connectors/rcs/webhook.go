package rcs

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/fallback"
)

// Webhook authentication schemes of [MaaPWebhook].
const (
	// MaaPAuthHMAC: the platform signs the raw body with HMAC-SHA256 and the
	// shared secret, hex or base64 (optionally "sha256="-prefixed) in
	// SignatureHeader.
	MaaPAuthHMAC = "hmac-sha256"
	// MaaPAuthBearer: the platform sends "Authorization: Bearer <secret>".
	MaaPAuthBearer = "bearer"
)

// DefaultMaaPSignatureHeader is the header [MaaPAuthHMAC] reads by default.
const DefaultMaaPSignatureHeader = "X-Signature"

// RBMWebhook is the RBM part of a [WebhookConfig].
type RBMWebhook struct {
	// AgentID is the agent whose events are accepted; events naming
	// another agentId are refused with 403.
	AgentID string
	// ClientToken is the webhook client token entered in the Developer
	// Console: it answers the registration handshake and is the HMAC key of
	// X-Goog-Signature. Never logged.
	ClientToken string
}

// MaaPWebhook is the MaaP part of a [WebhookConfig]. MaaP (FNW.11) does not
// standardise webhook authentication; pick what the platform does.
type MaaPWebhook struct {
	// BotID is the chatbot whose events are accepted.
	BotID string
	// Auth is [MaaPAuthHMAC] (default) or [MaaPAuthBearer].
	Auth string
	// Secret is the shared secret (HMAC key or bearer token); required.
	// Never logged.
	Secret string
	// SignatureHeader is the header of [MaaPAuthHMAC]; default
	// [DefaultMaaPSignatureHeader].
	SignatureHeader string
}

// WebhookConfig configures a [WebhookHandler]. Store and Consumer are
// required, and at least one of RBM and MaaP.
type WebhookConfig struct {
	// PathPrefix is the path the handler is mounted at; default "/rcs".
	// It serves {PathPrefix}/rbm and {PathPrefix}/maap, each optionally
	// followed by "/{agent or bot ID}".
	PathPrefix string
	// RBM enables {PathPrefix}/rbm; nil answers 404 there.
	RBM *RBMWebhook
	// MaaP enables {PathPrefix}/maap; nil answers 404 there.
	MaaP *MaaPWebhook
	// Store persists events; see [DBEventStore].
	Store EventStore
	// Consumer receives each event once it is stored.
	Consumer EventConsumer
	// Logger gets one line per rejected request and per worker problem;
	// default zap.NewNop().
	Logger *zap.Logger
	// Clock times the worker's retries; default [fallback.SystemClock].
	Clock fallback.Clock
	// MaxBodyBytes caps a request body; default 1 MiB.
	MaxBodyBytes int64
	// Retry governs hand-over retries after the consumer fails:
	// Policy.Attempts (default 100) failures of one event make the worker
	// give up on it (it stays in the table, marked failed); Policy.Initial
	// (default 1 s) doubles up to Policy.Max (default 5 min).
	Retry RetryPolicy
	// Retention is how long processed events are kept to recognise
	// replays; default 14 days (Google retries for up to 7). A signed
	// event whose own time (RBM sendTime, MaaP timestamp) is older than
	// Retention less [replaySkew] is refused, since its row may be gone.
	Retention time.Duration
	// LogEvery is the interval of rejection logging: the first rejected
	// request of an interval gets a line, the rest one summary line with
	// their count; default 1 minute.
	LogEvery time.Duration
	// OnReject, if set, is told of every request refused before it was
	// stored (provider "" for unknown paths), e.g. for a metrics counter.
	// It runs on the request's goroutine and must not block.
	OnReject func(provider string, status int)
}

// replaySkew is how far ahead of bubbled's clock a provider's event times
// may be while replays stay recognisable: stored rows live Retention from
// their arrival, signed events are accepted up to Retention less this from
// their own time. Capped at half the retention for short retentions.
const replaySkew = time.Hour

// WebhookHandler receives the providers' webhooks. ServeHTTP verifies,
// persists and acknowledges; a single worker goroutine, started by Start
// and stopped by Stop, hands stored events to the consumer in order of
// arrival and marks them processed. Events stored but not processed (a
// crash, a consumer error) are handed over again after Start. ServeHTTP is
// safe for concurrent use and may run before Start.
type WebhookHandler struct {
	cfg   WebhookConfig
	log   *zap.Logger
	clock fallback.Clock
	retry RetryPolicy

	wake    chan struct{} // buffered 1: "new events stored"
	rejects *rejectLog

	mu     sync.Mutex
	cancel context.CancelFunc // guarded by mu; set while the worker runs
	done   chan struct{}      // guarded by mu; closed when the worker exits

	// lastPrune is owned by the worker goroutine.
	lastPrune time.Time
}

var _ http.Handler = (*WebhookHandler)(nil)

// NewWebhookHandler checks cfg and returns a handler; it starts nothing.
func NewWebhookHandler(cfg WebhookConfig) (*WebhookHandler, error) {
	if cfg.Store == nil || cfg.Consumer == nil {
		return nil, errors.New("RCS webhook needs an event store and a consumer")
	}
	if cfg.RBM == nil && cfg.MaaP == nil {
		return nil, errors.New("RCS webhook needs rcs.rbm or rcs.maap configured")
	}
	if cfg.RBM != nil && (cfg.RBM.AgentID == "" || cfg.RBM.ClientToken == "") {
		return nil, errors.New("rcs.rbm.agent_id and rcs.rbm.webhook_client_token must be set to receive RBM webhooks (the token is the one entered with the webhook URL in the Developer Console)")
	}
	if m := cfg.MaaP; m != nil {
		if m.BotID == "" || m.Secret == "" {
			return nil, errors.New("rcs.maap.bot_id and rcs.maap.webhook_secret must be set to receive MaaP webhooks")
		}
		if m.Auth == "" {
			m.Auth = MaaPAuthHMAC
		}
		if m.Auth != MaaPAuthHMAC && m.Auth != MaaPAuthBearer {
			return nil, fmt.Errorf("rcs.maap.webhook_auth %q is not %q or %q", m.Auth, MaaPAuthHMAC, MaaPAuthBearer)
		}
		if m.SignatureHeader == "" {
			m.SignatureHeader = DefaultMaaPSignatureHeader
		}
	}
	if cfg.PathPrefix == "" {
		cfg.PathPrefix = "/rcs"
	}
	cfg.PathPrefix = "/" + strings.Trim(cfg.PathPrefix, "/")
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 14 * 24 * time.Hour
	}
	r := cfg.Retry
	if r.Policy.Attempts <= 0 {
		r.Policy.Attempts = 100
	}
	if r.Policy.Initial <= 0 {
		r.Policy.Initial = time.Second
	}
	if r.Policy.Max <= 0 {
		r.Policy.Max = 5 * time.Minute
	}
	h := &WebhookHandler{
		cfg:   cfg,
		log:   cfg.Logger,
		clock: cfg.Clock,
		retry: r.withDefaults(),
		wake:  make(chan struct{}, 1),
	}
	if h.log == nil {
		h.log = zap.NewNop()
	}
	if h.clock == nil {
		h.clock = fallback.SystemClock{}
	}
	if cfg.LogEvery <= 0 {
		h.cfg.LogEvery = time.Minute
	}
	h.rejects = newRejectLog(h.log, h.clock, h.cfg.LogEvery)
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *WebhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, h.cfg.PathPrefix+"/")
	if !ok {
		h.reject(w, r, "", http.StatusNotFound, "unknown RCS webhook path", nil)
		return
	}
	seg := strings.Split(strings.Trim(rest, "/"), "/")
	if len(seg) > 2 {
		h.reject(w, r, "", http.StatusNotFound, "unknown RCS webhook path", nil)
		return
	}
	provider := seg[0]
	var configuredID string
	switch {
	case provider == "rbm" && h.cfg.RBM != nil:
		configuredID = h.cfg.RBM.AgentID
	case provider == "maap" && h.cfg.MaaP != nil:
		configuredID = h.cfg.MaaP.BotID
	default:
		h.reject(w, r, provider, http.StatusNotFound, "no RCS provider configured for this path", nil)
		return
	}
	if len(seg) == 2 && seg[1] != configuredID {
		h.reject(w, r, provider, http.StatusNotFound, "webhook for an unknown agent", nil,
			zap.String("agent", seg[1]))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.reject(w, r, provider, http.StatusMethodNotAllowed, "webhook request is not a POST", nil)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.reject(w, r, provider, http.StatusRequestEntityTooLarge, "webhook body too large", nil, zap.Int64("limit", mbe.Limit))
		} else {
			h.reject(w, r, provider, http.StatusBadRequest, "could not read webhook body", err)
		}
		return
	}
	if provider == "rbm" {
		h.serveRBM(w, r, body)
	} else {
		h.serveMaaP(w, r, body)
	}
}

// rbmEnvelope is the Pub/Sub push envelope, or the registration handshake.
type rbmEnvelope struct {
	Message *struct {
		Data        string `json:"data"`
		MessageID   string `json:"messageId"`
		PublishTime string `json:"publishTime"`
	} `json:"message"`
	Subscription string `json:"subscription"`

	ClientToken *string `json:"clientToken"`
	Secret      *string `json:"secret"`
}

func (h *WebhookHandler) serveRBM(w http.ResponseWriter, r *http.Request, body []byte) {
	cfg := h.cfg.RBM
	var env rbmEnvelope
	if err := decodeStrict(body, &env); err != nil {
		h.reject(w, r, "rbm", http.StatusBadRequest, "rejected RBM webhook with malformed JSON envelope", err)
		return
	}
	if env.Message == nil && env.ClientToken != nil {
		// Registration handshake: prove we know the client token by
		// echoing the secret.
		if subtle.ConstantTimeCompare([]byte(*env.ClientToken), []byte(cfg.ClientToken)) != 1 {
			h.reject(w, r, "rbm", http.StatusUnauthorized, "rejected RBM webhook handshake with a wrong client token (check rcs.rbm.webhook_client_token)", nil)
			return
		}
		if env.Secret == nil {
			h.reject(w, r, "rbm", http.StatusBadRequest, "rejected RBM webhook handshake without secret", nil)
			return
		}
		h.log.Info("answered RBM webhook registration handshake")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, *env.Secret)
		return
	}
	sigHeader := r.Header.Get("X-Goog-Signature")
	if sigHeader == "" {
		h.reject(w, r, "rbm", http.StatusUnauthorized, "rejected RBM webhook without X-Goog-Signature", nil)
		return
	}
	if env.Message == nil || env.Message.Data == "" {
		h.reject(w, r, "rbm", http.StatusBadRequest, "rejected RBM webhook without message.data", nil)
		return
	}
	data, err := decodeBase64(env.Message.Data)
	if err != nil {
		h.reject(w, r, "rbm", http.StatusBadRequest, "rejected RBM webhook whose message.data is not base64", err)
		return
	}
	if !VerifyRBMSignature(cfg.ClientToken, data, sigHeader) {
		h.reject(w, r, "rbm", http.StatusUnauthorized, "rejected RBM webhook with a bad X-Goog-Signature (tampered, or a different client token: check rcs.rbm.webhook_client_token)", nil)
		return
	}
	now := h.clock.Now()
	ev, agentID, err := parseRBM(data, now)
	if agentID != "" && agentID != cfg.AgentID {
		h.reject(w, r, "rbm", http.StatusForbidden, "rejected RBM webhook for another agent (use a per-agent webhook, or configure that agent)", nil,
			zap.String("agent", agentID))
		return
	}
	key := ""
	if ev != nil {
		key = ev.Meta().Key
	}
	if key == "" && env.Message.MessageID != "" {
		key = "pubsub:" + env.Message.MessageID
	}
	h.accept(w, r, "rbm", key, data, ev, err)
}

func (h *WebhookHandler) serveMaaP(w http.ResponseWriter, r *http.Request, body []byte) {
	cfg := h.cfg.MaaP
	var ok bool
	switch cfg.Auth {
	case MaaPAuthBearer:
		ok = verifyBearer(r.Header.Get("Authorization"), cfg.Secret)
	default:
		ok = VerifyMaaPSignature(cfg.Secret, body, r.Header.Get(cfg.SignatureHeader))
	}
	if !ok {
		h.reject(w, r, "maap", http.StatusUnauthorized, "rejected MaaP webhook with a missing or bad signature (check rcs.maap.webhook_secret and webhook_auth)", nil)
		return
	}
	ev, err := parseMaaP(body, h.clock.Now())
	key := ""
	if ev != nil {
		key = ev.Meta().Key
	}
	h.accept(w, r, "maap", key, body, ev, err)
}

// accept stores a verified payload (or rejects/ignores it per parseErr)
// and answers.
func (h *WebhookHandler) accept(w http.ResponseWriter, r *http.Request, provider, key string, payload []byte, ev Event, parseErr error) {
	switch {
	case errors.Is(parseErr, errMalformed):
		h.reject(w, r, provider, http.StatusBadRequest, "rejected RCS webhook with malformed JSON", parseErr)
		return
	case errors.Is(parseErr, errIgnored):
		h.log.Debug("ignored RCS webhook event", zap.String("provider", provider), zap.String("reason", parseErr.Error()))
		w.WriteHeader(http.StatusOK)
		return
	case parseErr != nil:
		h.reject(w, r, provider, http.StatusBadRequest, "rejected RCS webhook", parseErr)
		return
	}
	if maxAge := h.maxAge(); h.clock.Now().Sub(ev.Meta().Time) > maxAge {
		h.reject(w, r, provider, http.StatusBadRequest, "rejected signed RCS webhook older than the replay window (a replay, or the provider's clock is far off)", nil,
			zap.Time("event_time", ev.Meta().Time), zap.Duration("max_age", maxAge))
		return
	}
	if key == "" {
		sum := sha256.Sum256(payload)
		key = "body:" + hex.EncodeToString(sum[:16])
	}
	inserted, err := h.cfg.Store.Put(r.Context(), provider, key, payload, h.clock.Now())
	if err != nil {
		h.log.Error("failed to store RCS webhook event; the provider will retry",
			zap.String("provider", provider), zap.String("event_key", key), zap.Error(err))
		http.Error(w, "could not store event", http.StatusInternalServerError)
		return
	}
	m := ev.Meta()
	if !inserted {
		h.log.Debug("dropped replayed RCS webhook event", zap.String("provider", provider), zap.String("event_key", key))
	} else {
		h.log.Debug("stored RCS webhook event", zap.String("provider", provider), zap.String("event_key", key),
			zap.String("kind", eventKind(ev)), zap.String("sender", phone.Mask(m.Sender)))
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
	w.WriteHeader(http.StatusOK)
}

// maxAge is the oldest a signed event may be: older ones may have outlived
// their stored row, so a replay would be handled again.
func (h *WebhookHandler) maxAge() time.Duration {
	return h.cfg.Retention - min(replaySkew, h.cfg.Retention/2)
}

// reject answers with status and logs one line, or counts it for the
// interval's summary line (see rejectLog).
func (h *WebhookHandler) reject(w http.ResponseWriter, r *http.Request, provider string, status int, msg string, err error, fields ...zap.Field) {
	if !h.rejects.allow(status, r.RemoteAddr) {
		http.Error(w, http.StatusText(status), status)
		return
	}
	fields = append(fields, zap.String("provider", provider), zap.Int("status", status),
		zap.String("path", r.URL.Path), zap.String("remote_addr", r.RemoteAddr))
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	if h.cfg.OnReject != nil {
		h.cfg.OnReject(provider, status)
	}
	if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
		h.log.Info(msg, fields...)
	} else {
		h.log.Warn(msg, fields...)
	}
	http.Error(w, http.StatusText(status), status)
}

// VerifyRBMSignature reports whether header (X-Goog-Signature) is the
// base64 HMAC-SHA512 of data (the base64-decoded message.data) keyed with
// clientToken. The comparison is constant-time.
func VerifyRBMSignature(clientToken string, data []byte, header string) bool {
	sig, err := decodeBase64(strings.TrimSpace(header))
	if err != nil || len(sig) != sha512.Size {
		return false
	}
	mac := hmac.New(sha512.New, []byte(clientToken))
	mac.Write(data)
	return hmac.Equal(sig, mac.Sum(nil))
}

// VerifyMaaPSignature reports whether header is the HMAC-SHA256 of body
// keyed with secret, in hex or base64, optionally prefixed "sha256=". The
// comparison is constant-time.
func VerifyMaaPSignature(secret string, body []byte, header string) bool {
	v := strings.TrimSpace(header)
	v = strings.TrimPrefix(v, "sha256=")
	if v == "" || secret == "" {
		return false
	}
	var sig []byte
	if len(v) == 2*sha256.Size {
		sig, _ = hex.DecodeString(v)
	}
	if sig == nil {
		sig, _ = decodeBase64(v)
	}
	if len(sig) != sha256.Size {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(sig, mac.Sum(nil))
}

func verifyBearer(header, secret string) bool {
	tok, ok := strings.CutPrefix(header, "Bearer ")
	return ok && secret != "" && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(secret)) == 1
}

// decodeBase64 accepts standard or URL-safe base64, padded or not.
func decodeBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// Start starts the worker that hands stored events to the consumer,
// beginning with those left unprocessed by an earlier run. It returns an
// error if the worker already runs. The worker stops when ctx is done or
// Stop is called.
func (h *WebhookHandler) Start(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cancel != nil {
		return errors.New("RCS webhook worker already started")
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	h.cancel, h.done = cancel, done
	go func() {
		defer close(done)
		h.run(ctx)
	}()
	return nil
}

// Stop stops the worker and waits for it to exit, and logs the count of
// rejections not yet summarised. An event being handed over is cancelled
// and handed over again after the next Start. Safe to call more than once,
// and before Start.
func (h *WebhookHandler) Stop() {
	h.rejects.Close()
	h.mu.Lock()
	cancel, done := h.cancel, h.done
	h.cancel, h.done = nil, nil
	h.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// run is the worker loop.
func (h *WebhookHandler) run(ctx context.Context) {
	failures := 0 // consecutive store failures
	for {
		wait, storeErr := h.drain(ctx)
		if ctx.Err() != nil {
			return
		}
		if storeErr {
			failures++
			wait = h.retry.backoff(failures)
		} else {
			failures = 0
		}
		if wait > 0 {
			if fallback.Sleep(ctx, h.clock, wait) != nil {
				return
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
		}
	}
}

// drain hands over every pending event. It returns a wait before the next
// pass when the consumer failed, or storeErr when the store failed.
func (h *WebhookHandler) drain(ctx context.Context) (wait time.Duration, storeErr bool) {
	h.prune(ctx)
	for {
		pending, err := h.cfg.Store.Pending(ctx, 100)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Error("failed to list pending RCS events; retrying", zap.Error(err))
			}
			return 0, true
		}
		if len(pending) == 0 {
			return 0, false
		}
		for _, se := range pending {
			if ctx.Err() != nil {
				return 0, false
			}
			wait, storeErr := h.handOver(ctx, se)
			if wait > 0 || storeErr {
				return wait, storeErr
			}
		}
	}
}

// handOver decodes one stored event and gives it to the consumer.
func (h *WebhookHandler) handOver(ctx context.Context, se StoredEvent) (time.Duration, bool) {
	// Marks must survive Stop: a handed-over event marked processed is
	// never handed over again.
	markCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	fields := []zap.Field{zap.String("provider", se.Provider), zap.String("event_key", se.Key), zap.Int64("event_row", se.ID)}
	ev, err := decodeStored(se)
	if err != nil {
		level := h.log.Error
		if errors.Is(err, errIgnored) {
			level = h.log.Debug
		}
		level("dropped stored RCS event that cannot be handed over", append(fields, zap.Error(err))...)
		if err := h.cfg.Store.MarkProcessed(markCtx, se.ID, h.clock.Now(), err.Error()); err != nil {
			h.log.Error("failed to mark RCS event processed", append(fields, zap.Error(err))...)
			return 0, true
		}
		return 0, false
	}
	if err := h.cfg.Consumer(ctx, ev); err != nil {
		if ctx.Err() != nil {
			return 0, false
		}
		n, ferr := h.cfg.Store.RecordFailure(markCtx, se.ID, cut(err.Error()))
		if ferr != nil {
			h.log.Error("failed to record RCS event failure", append(fields, zap.Error(ferr))...)
			return 0, true
		}
		if n >= h.retry.Policy.Attempts {
			h.log.Error("gave up handing over RCS event; it stays in bubbled_rcs_event marked failed",
				append(fields, zap.Int("attempts", n), zap.Error(err))...)
			if err := h.cfg.Store.MarkProcessed(markCtx, se.ID, h.clock.Now(), "gave up: "+cut(err.Error())); err != nil {
				h.log.Error("failed to mark RCS event processed", append(fields, zap.Error(err))...)
				return 0, true
			}
			return 0, false
		}
		wait := h.retry.backoff(n)
		h.log.Warn("failed to hand over RCS event; retrying",
			append(fields, zap.Int("attempts", n), zap.Duration("wait", wait), zap.Error(err))...)
		return wait, false
	}
	if err := h.cfg.Store.MarkProcessed(markCtx, se.ID, h.clock.Now(), ""); err != nil {
		h.log.Error("failed to mark RCS event processed; it may be handed over again", append(fields, zap.Error(err))...)
		return 0, true
	}
	return 0, false
}

// prune deletes old processed events at most once a day.
func (h *WebhookHandler) prune(ctx context.Context) {
	now := h.clock.Now()
	if !h.lastPrune.IsZero() && now.Sub(h.lastPrune) < 24*time.Hour {
		return
	}
	h.lastPrune = now
	n, err := h.cfg.Store.Prune(ctx, now.Add(-h.cfg.Retention))
	switch {
	case err != nil && ctx.Err() == nil:
		h.log.Warn("failed to prune old RCS events", zap.Error(err))
	case n > 0:
		h.log.Debug("pruned old RCS events", zap.Int64("count", n))
	}
}

// decodeStored re-parses a stored payload into its Event.
func decodeStored(se StoredEvent) (Event, error) {
	var ev Event
	var err error
	switch se.Provider {
	case "rbm":
		ev, _, err = parseRBM(se.Payload, se.ReceivedAt)
	case "maap":
		ev, err = parseMaaP(se.Payload, se.ReceivedAt)
	default:
		err = fmt.Errorf("unknown provider %q", se.Provider)
	}
	if err != nil {
		return nil, err
	}
	ev.Meta().Key = se.Key
	return ev, nil
}

// eventKind names an event's type for logs.
func eventKind(ev Event) string {
	switch ev.(type) {
	case *MessageEvent:
		return "message"
	case *DeliveredEvent:
		return "delivered"
	case *ReadEvent:
		return "read"
	case *TypingEvent:
		return "typing"
	case *UnsubscribeEvent:
		return "unsubscribe"
	case *SubscribeEvent:
		return "subscribe"
	case *FailedEvent:
		return "failed"
	}
	return fmt.Sprintf("%T", ev)
}
