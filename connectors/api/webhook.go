package api

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bubbled/bubbled/fallback"
	"go.mau.fi/util/dbutil"
	"go.uber.org/zap"
)

// webhook.go tells automations about received SMS: a signed POST per SMS
// to each webhook of the line (api.webhooks), stored first and retried
// with backoff until the receiver answers 2xx, across restarts.

// Headers of an outgoing webhook request.
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256>" of
	// "<t>.<body>" with the webhook's secret; see VerifySignature.
	SignatureHeader = "X-Bubbled-Signature"
	// DeliveryHeader is the event's ID, the same on every retry: a
	// receiver that has seen it can ignore the request.
	DeliveryHeader = "X-Bubbled-Delivery"
	// EventHeader names the event ("sms.received").
	EventHeader = "X-Bubbled-Event"
)

var schemaV2 = []string{
	`CREATE TABLE bubbled_api_webhook (
		url          TEXT    NOT NULL,
		event_id     TEXT    NOT NULL,
		payload      TEXT    NOT NULL,
		state        TEXT    NOT NULL,
		attempts     INTEGER NOT NULL,
		next_attempt BIGINT  NOT NULL,
		last_error   TEXT    NOT NULL,
		created_at   BIGINT  NOT NULL,
		PRIMARY KEY (url, event_id)
	)`,
	`CREATE INDEX bubbled_api_webhook_due_idx ON bubbled_api_webhook (state, next_attempt)`,
}

func upgradeV2(ctx context.Context, db *dbutil.Database) error {
	for _, q := range schemaV2 {
		if _, err := db.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// Webhook is one receiver of api.webhooks.
type Webhook struct {
	// URL receives the POSTs.
	URL string
	// Secret is the HMAC-SHA256 key. Never logged.
	Secret string
	// Lines are the E.164 numbers of the lines whose SMS it gets.
	Lines []string
}

// Received is the body of an "sms.received" webhook.
type Received struct {
	Event    string    `json:"event"`
	ID       string    `json:"id"`
	Line     string    `json:"line"`
	From     string    `json:"from"`
	Text     string    `json:"text"`
	Parts    int       `json:"parts"`
	Sent     time.Time `json:"sent"`
	Received time.Time `json:"received"`
}

// WebhookConfig configures Webhooks.
type WebhookConfig struct {
	Hooks []Webhook
	// DB holds the deliveries (run Upgrade first). Required.
	DB *dbutil.Database
	// Client makes the requests; default a client with a 10 s timeout.
	Client *http.Client
	// Retry paces retries; default 5 s doubling to 10 min, ±20 %.
	Retry fallback.RetryPolicy
	// GiveUpAfter ends the retries of a delivery (default 24 h).
	GiveUpAfter time.Duration
	// Clock is the time source; default fallback.SystemClock.
	Clock fallback.Clock
	// Log is the logger; default zap.NewNop().
	Log *zap.Logger
}

// Webhooks delivers received SMS to the configured webhooks. Create it
// with NewWebhooks; Start runs its one delivery goroutine, Stop ends it.
// Safe for concurrent use.
type Webhooks struct {
	cfg  WebhookConfig
	kick chan struct{}
	// cancel and wg belong to the delivery goroutine.
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewWebhooks builds the webhook sender; it does no I/O.
func NewWebhooks(cfg WebhookConfig) *Webhooks {
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Retry.Initial == 0 {
		cfg.Retry = fallback.RetryPolicy{Initial: 5 * time.Second, Max: 10 * time.Minute, Multiplier: 2, Jitter: 0.2}
	}
	if cfg.GiveUpAfter <= 0 {
		cfg.GiveUpAfter = 24 * time.Hour
	}
	if cfg.Clock == nil {
		cfg.Clock = fallback.SystemClock{}
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	return &Webhooks{cfg: cfg, kick: make(chan struct{}, 1)}
}

// Received stores one delivery of r for each webhook of r.Line. It returns
// once they are stored (an SMS handed over again is not stored twice), so
// the caller may then mark the SMS handled.
func (w *Webhooks) Received(ctx context.Context, r Received) error {
	r.Event = "sms.received"
	payload, err := json.Marshal(r)
	if err != nil {
		return err
	}
	now := w.cfg.Clock.Now().UnixMilli()
	stored := false
	for _, h := range w.cfg.Hooks {
		if !slices.Contains(h.Lines, r.Line) {
			continue
		}
		_, err := w.cfg.DB.Exec(ctx, `INSERT INTO bubbled_api_webhook (url, event_id, payload, state, attempts, next_attempt, last_error, created_at)
			VALUES ($1, $2, $3, 'pending', 0, $4, '', $4) ON CONFLICT (url, event_id) DO NOTHING`, h.URL, r.ID, string(payload), now)
		if err != nil {
			return fmt.Errorf("store the webhook of SMS %s: %w", r.ID, err)
		}
		stored = true
	}
	if stored {
		wake(w.kick)
	}
	return nil
}

// Start starts the delivery goroutine; it first delivers what an earlier
// run left.
func (w *Webhooks) Start(ctx context.Context) {
	ctx, w.cancel = context.WithCancel(ctx)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for ctx.Err() == nil {
			wait := w.pass(ctx)
			select {
			case <-ctx.Done():
			case <-w.kick:
			case <-fallback.After(w.cfg.Clock, wait):
			}
		}
	}()
}

// Stop ends the delivery goroutine and waits for it.
func (w *Webhooks) Stop() {
	if w.cancel != nil {
		w.cancel()
	}
	w.wg.Wait()
}

type delivery struct {
	url, eventID, payload string
	attempts              int
	created               time.Time
}

// pass delivers what is due and returns how long to wait for the next.
func (w *Webhooks) pass(ctx context.Context) time.Duration {
	now := w.cfg.Clock.Now()
	rows, err := w.cfg.DB.Query(ctx, `SELECT url, event_id, payload, attempts, created_at FROM bubbled_api_webhook
		WHERE state='pending' AND next_attempt <= $1 ORDER BY created_at LIMIT 100`, now.UnixMilli())
	if err != nil {
		return 5 * time.Second
	}
	var due []delivery
	for rows.Next() {
		var d delivery
		var created int64
		if err := rows.Scan(&d.url, &d.eventID, &d.payload, &d.attempts, &created); err != nil {
			break
		}
		d.created = time.UnixMilli(created)
		due = append(due, d)
	}
	_ = rows.Close()
	for _, d := range due {
		if ctx.Err() != nil {
			return 0
		}
		w.deliver(ctx, d)
	}
	var next sql.NullInt64
	if err := w.cfg.DB.QueryRow(ctx, `SELECT MIN(next_attempt) FROM bubbled_api_webhook WHERE state='pending'`).Scan(&next); err != nil || !next.Valid {
		return time.Minute
	}
	return max(time.UnixMilli(next.Int64).Sub(w.cfg.Clock.Now()), 10*time.Millisecond)
}

// deliver makes one attempt and records it.
func (w *Webhooks) deliver(ctx context.Context, d delivery) {
	var hook *Webhook
	for i := range w.cfg.Hooks {
		if w.cfg.Hooks[i].URL == d.url {
			hook = &w.cfg.Hooks[i]
		}
	}
	state, lastErr := "done", ""
	if hook == nil {
		state, lastErr = "failed", "the webhook is no longer configured"
	} else if err := w.post(ctx, hook, d); err != nil {
		if ctx.Err() != nil {
			return
		}
		lastErr = err.Error()
		now := w.cfg.Clock.Now()
		if now.Sub(d.created) < w.cfg.GiveUpAfter {
			delay := w.cfg.Retry.Delay(d.attempts+1, rand.Float64())
			w.cfg.Log.Info("failed to deliver a webhook; trying again later", zap.String("event_id", d.eventID), zap.Duration("in", delay), zap.Error(err))
			_, _ = w.cfg.DB.Exec(ctx, `UPDATE bubbled_api_webhook SET attempts=$3, next_attempt=$4, last_error=$5 WHERE url=$1 AND event_id=$2`,
				d.url, d.eventID, d.attempts+1, now.Add(delay).UnixMilli(), lastErr)
			return
		}
		state = "failed"
	}
	if state == "failed" {
		w.cfg.Log.Warn("gave up delivering a webhook", zap.String("event_id", d.eventID), zap.String("reason", lastErr))
	}
	// Recorded even when Stop came meanwhile: the receiver has it.
	_, err := w.cfg.DB.Exec(context.WithoutCancel(ctx), `UPDATE bubbled_api_webhook SET state=$3, attempts=$4, last_error=$5 WHERE url=$1 AND event_id=$2`,
		d.url, d.eventID, state, d.attempts+1, lastErr)
	if err != nil {
		w.cfg.Log.Warn("failed to record a webhook delivery", zap.Error(err))
	}
}

// post sends one signed request; anything but a 2xx answer is an error.
func (w *Webhooks) post(ctx context.Context, hook *Webhook, d delivery) error {
	body := []byte(d.payload)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(EventHeader, "sms.received")
	req.Header.Set(DeliveryHeader, d.eventID)
	req.Header.Set(SignatureHeader, Sign(hook.Secret, w.cfg.Clock.Now(), body))
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("post to the webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the webhook answered %s", resp.Status)
	}
	return nil
}

// Sign returns the signature header value for body at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<unix seconds>.<body>")>".
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature checks a signature header for body, as a receiver
// should: the MAC in constant time, and the time within tolerance of now
// (replays of old requests fail).
func VerifySignature(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return errors.New("the signature header is not t=<seconds>,v1=<hex>")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("the signature is %s old", d.Round(time.Second))
	}
	got, err := hex.DecodeString(sig)
	want := Sign(secret, time.Unix(sec, 0), body)
	wantMAC, _ := hex.DecodeString(want[strings.Index(want, "v1=")+3:])
	if err != nil || !hmac.Equal(got, wantMAC) {
		return errors.New("the signature does not match")
	}
	return nil
}
