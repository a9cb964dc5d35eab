package mms

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.mau.fi/util/dbutil"
	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/fallback"
)

// Delivery is a received MMS for the bridge, or (Expired) the news that
// one could not be fetched before it expired.
type Delivery struct {
	// ID is stable across restarts ("mms:<line>:<hash>"): the bridge uses
	// it as the Matrix message ID, so a repeated delivery is recognised.
	ID     string
	LineID string
	// From is the sender's number (E.164 where it parses).
	From string
	// Message is the m-retrieve-conf; nil when Expired.
	Message *PDU
	// Expired means the MMSC never served the message before its expiry
	// (or refused it for good): the bridge posts a notice naming From.
	Expired bool
	// Time is the message's Date, or when the notification came.
	Time time.Time
}

// DeliverFunc hands a Delivery to the bridge; nil means accepted for good.
// An error keeps it and retries later.
type DeliverFunc func(ctx context.Context, d *Delivery) error

// InboxConfig configures an Inbox.
type InboxConfig struct {
	LineID string
	Client *Client
	// Clock is injected by tests; default the system clock.
	Clock fallback.Clock
	// Retry paces fetch, delivery and notify-response retries (Initial
	// default 30 s, Max 30 min) until the message expires.
	Retry fallback.RetryPolicy
	// DefaultExpiry applies to notifications without X-Mms-Expiry (7 days).
	DefaultExpiry time.Duration
	// OnDeliveryReport, when set, takes each m-delivery-ind (the report on
	// an MMS we sent, by its Message-ID). An error keeps the push stored
	// and retried by the SMS line.
	OnDeliveryReport func(ctx context.Context, messageID, to string, status Status) error
	// OnSent, when set, hears the outcome of each MMS queued with Send,
	// once it is stored; an error keeps it and asks again later.
	OnSent func(ctx context.Context, res SendResult) error
	// SendFor is how long a queued MMS is retried on temporary errors
	// before it fails (default 24 h).
	SendFor time.Duration
}

// Client returns the MMSC client the inbox fetches with (also used to send).
func (in *Inbox) Client() *Client { return in.cfg.Client }

// Inbox is the persisted MMS fetch queue of one line: notifications go in
// (Notify), are fetched with backoff until they expire, handed to the
// bridge, then confirmed to the MMSC with m-notifyresp-ind. It also holds
// the line's send queue (Send, outbox.go). Each step is stored, so a
// restart resumes where it stopped and a notification seen twice is
// fetched once. One goroutine (Start..Stop) owns the work.
type Inbox struct {
	cfg     InboxConfig
	db      *dbutil.Database
	log     *zap.Logger
	deliver DeliverFunc
	kick    chan struct{}

	mu     sync.Mutex // guards cancel
	cancel context.CancelFunc
	done   chan struct{}
}

// NewInbox returns the inbox of cfg.LineID on db (run Upgrade first). It
// does no I/O.
func NewInbox(cfg InboxConfig, db *dbutil.Database, log *zap.Logger, deliver DeliverFunc) *Inbox {
	if cfg.Clock == nil {
		cfg.Clock = fallback.SystemClock{}
	}
	if cfg.Retry.Initial == 0 {
		cfg.Retry.Initial = 30 * time.Second
	}
	if cfg.Retry.Max == 0 {
		cfg.Retry.Max = 30 * time.Minute
	}
	if cfg.SendFor == 0 {
		cfg.SendFor = 24 * time.Hour
	}
	if cfg.DefaultExpiry == 0 {
		cfg.DefaultExpiry = 7 * 24 * time.Hour
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Inbox{cfg: cfg, db: db, log: log.With(zap.String("line_id", cfg.LineID)), deliver: deliver, kick: make(chan struct{}, 1)}
}

// Notify takes a WSP push received by SMS (connectors/sms.Push data). An
// m-notification-ind is stored (once per content location) and queued for
// fetching; other pushes (SI, provisioning, delivery reports for now) are
// logged and dropped. It returns only errors of the store, so that the
// caller keeps the push and retries: a push that does not decode is
// logged and accepted, since retrying cannot fix it.
func (in *Inbox) Notify(ctx context.Context, push []byte, smsFrom string) error {
	wsp, err := DecodePush(push)
	if err != nil {
		in.log.Warn("dropped undecodable WAP push", zap.String("from", phone.Mask(smsFrom)), zap.Error(err))
		return nil
	}
	if !wsp.IsMMS() {
		in.log.Info("ignored WAP push that is not MMS", zap.String("content_type", wsp.ContentType), zap.String("app_id", wsp.AppID))
		return nil
	}
	n, err := Decode(wsp.Body)
	if err != nil {
		in.log.Warn("dropped undecodable MMS notification", zap.String("from", phone.Mask(smsFrom)), zap.Error(err), zap.Binary("pdu", wsp.Body))
		return nil
	}
	if n.Type == DeliveryInd && in.cfg.OnDeliveryReport != nil {
		to := ""
		if len(n.To) > 0 {
			to = normalise(Number(n.To[0]), "")
		}
		in.log.Info("received MMS delivery report", zap.String("message_id", n.MessageID), zap.Stringer("status", n.Status))
		return in.cfg.OnDeliveryReport(ctx, n.MessageID, to, n.Status)
	}
	if n.Type != NotificationInd {
		in.log.Info("ignored MMS push", zap.Stringer("type", n.Type), zap.String("message_id", n.MessageID))
		return nil
	}
	if n.ContentLocation == "" {
		in.log.Warn("dropped MMS notification without content location", zap.String("transaction_id", n.TransactionID))
		return nil
	}
	if n.From == "" {
		n.From = smsFrom
	}
	id, fresh, err := in.insert(ctx, n, wsp.Body)
	if err != nil {
		return err
	}
	if fresh {
		in.log.Info("queued MMS for fetching", zap.String("id", id), zap.String("from", phone.Mask(Number(n.From))), zap.Uint64("size", n.Size))
	} else {
		in.log.Debug("recognised an MMS notification seen before", zap.String("id", id))
	}
	in.wake()
	return nil
}

func (in *Inbox) wake() {
	select {
	case in.kick <- struct{}{}:
	default:
	}
}

// Start starts the worker; Stop ends it and waits.
func (in *Inbox) Start(ctx context.Context) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cancel != nil {
		return
	}
	ctx, in.cancel = context.WithCancel(ctx)
	in.done = make(chan struct{})
	go in.run(ctx, in.done)
}

// Stop ends the worker and waits for it. An exchange in flight is
// cancelled and resumed at the next Start.
func (in *Inbox) Stop() {
	in.mu.Lock()
	cancel, done := in.cancel, in.done
	in.cancel = nil
	in.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (in *Inbox) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	in.wake()
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-in.kick:
		case <-timer:
		}
		next, err := in.work(ctx)
		if err == nil {
			var sendAt time.Time
			sendAt, err = in.workSends(ctx)
			if !sendAt.IsZero() {
				next = earliest(next, sendAt)
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			in.log.Error("failed to read the MMS queue; retrying", zap.Error(err))
			next = in.cfg.Clock.Now().Add(in.cfg.Retry.Initial)
		}
		timer = nil
		if !next.IsZero() {
			timer = fallback.After(in.cfg.Clock, max(next.Sub(in.cfg.Clock.Now()), 0))
		}
	}
}

// work runs every due item one step as far as it goes and returns when the
// next not-yet-due item is due (zero: none).
func (in *Inbox) work(ctx context.Context) (time.Time, error) {
	items, err := in.pending(ctx)
	if err != nil {
		return time.Time{}, err
	}
	var next time.Time
	for _, it := range items {
		if ctx.Err() != nil {
			return next, nil
		}
		if it.nextAt.After(in.cfg.Clock.Now()) {
			next = earliest(next, it.nextAt)
			continue
		}
		if at := in.advance(ctx, it); !at.IsZero() {
			next = earliest(next, at)
		}
	}
	return next, nil
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// advance runs one item through its remaining steps; it returns when to
// try again (zero when done).
func (in *Inbox) advance(ctx context.Context, it *item) time.Time {
	for it.state != stateDone {
		var err error
		switch it.state {
		case stateFetch:
			err = in.fetch(ctx, it)
		case stateDeliver, stateExpired:
			err = in.hand(ctx, it)
		case stateRespond:
			err = in.respond(ctx, it)
		}
		if err != nil {
			return in.retryLater(ctx, it, err)
		}
	}
	return time.Time{}
}

func (in *Inbox) retryLater(ctx context.Context, it *item, cause error) time.Time {
	if ctx.Err() != nil {
		return time.Time{}
	}
	it.attempts++
	at := in.cfg.Clock.Now().Add(in.cfg.Retry.Delay(it.attempts, rand.Float64()))
	in.log.Warn("failed an MMS step; will retry", zap.String("id", it.id), zap.String("step", it.state),
		zap.Int("attempt", it.attempts), zap.Time("retry_at", at), zap.Error(cause))
	if err := in.setState(ctx, it, it.state, at); err != nil {
		in.log.Error("failed to store MMS retry", zap.String("id", it.id), zap.Error(err))
	}
	return at
}

// fetch GETs the message. An expired or refused location, or the expiry
// passing while the MMSC stays unreachable, turns the item into an expiry
// notice.
func (in *Inbox) fetch(ctx context.Context, it *item) error {
	p, raw, err := in.cfg.Client.fetch(ctx, it.location)
	if err == nil {
		in.log.Info("fetched MMS", zap.String("id", it.id), zap.Int("parts", len(p.Parts)))
		it.message = p
		return in.saveFetched(ctx, it, raw)
	}
	var he *HTTPError
	permanent := errors.Is(err, ErrExpired) || (errors.As(err, &he) && !he.Temporary()) || errors.As(err, new(*DecodeError))
	if !permanent && in.cfg.Clock.Now().Before(it.expiresAt) {
		return err
	}
	in.log.Warn("gave up fetching MMS", zap.String("id", it.id), zap.String("from", phone.Mask(it.from)), zap.Error(err))
	return in.setState(ctx, it, stateExpired, in.cfg.Clock.Now())
}

// hand passes the fetched message (or the expiry notice) to the bridge.
func (in *Inbox) hand(ctx context.Context, it *item) error {
	d := &Delivery{ID: it.id, LineID: in.cfg.LineID, From: normalise(Number(it.from), ""), Time: it.receivedAt}
	if it.state == stateExpired {
		d.Expired = true
	} else {
		d.Message = it.message
		if !it.message.Date.IsZero() {
			d.Time = it.message.Date
		}
		if it.message.From != "" {
			d.From = normalise(Number(it.message.From), "")
		}
	}
	if err := in.deliver(ctx, d); err != nil {
		return fmt.Errorf("hand MMS to the bridge: %w", err)
	}
	// Recorded even when Stop came meanwhile: the bridge has it.
	return in.setState(context.WithoutCancel(ctx), it, stateRespond, in.cfg.Clock.Now())
}

// respond sends m-notifyresp-ind: Retrieved, or Expired for a message we
// gave up on. Once the message expired, a failing response is dropped.
func (in *Inbox) respond(ctx context.Context, it *item) error {
	status := StatusRetrieved
	if it.message == nil {
		status = StatusExpired
	}
	_, err := in.cfg.Client.Post(ctx, &PDU{Type: NotifyRespInd, TransactionID: it.tid, Status: status, ReportAllowed: 0x81})
	if err != nil && in.cfg.Clock.Now().Before(it.expiresAt) {
		return err
	}
	if err != nil {
		in.log.Warn("dropped MMS notify response after expiry", zap.String("id", it.id), zap.Error(err))
	}
	return in.setState(ctx, it, stateDone, in.cfg.Clock.Now())
}
