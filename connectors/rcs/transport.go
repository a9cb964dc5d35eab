package rcs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/fallback"
)

// TransportConfig configures a [Transport].
type TransportConfig struct {
	// ReachableTTL is how long a "reachable" capability answer is reused
	// (network.rcs.capability_ttl_reachable).
	ReachableTTL time.Duration
	// UnreachableTTL is how long a "not reachable" answer is reused
	// (network.rcs.capability_ttl_unreachable).
	UnreachableTTL time.Duration
	// MessageTTL is the time-to-live given to every message
	// (network.rcs.message_ttl).
	MessageTTL time.Duration
	// Media serves the files of file messages; nil (no
	// network.rcs.public_url) means no file goes by RCS.
	Media *MediaStore
	// Log receives the one error an operator must act on (refused
	// credentials) and failed revokes; nil means no logging.
	Log *zap.Logger
	// Clock tells the time of cached answers; nil means
	// fallback.SystemClock.
	Clock fallback.Clock
	// Budget, when set, caps the messages sent per calendar day at PerDay
	// (network.rcs.rate_per_day; the provider charges per message): past
	// it Send is unreachable, so the next route takes the message. A send
	// that fails gives its use back.
	Budget Budget
	// PerDay is the cap Budget applies; 0 or less counts without a cap.
	PerDay int
}

// Budget counts uses of a named daily budget; quota.Counter is one.
type Budget interface {
	// Take counts one use, or refuses (an error) when limit uses were counted today.
	Take(ctx context.Context, name string, limit int) error
	// Return gives back one use counted today.
	Return(ctx context.Context, name string) error
}

// budgetName is the name of the RCS route's daily budget.
const budgetName = "rcs"

// capability is a cached capability answer.
type capability struct {
	reachable bool
	until     time.Time
}

// Transport is the RCS route of the fallback router: a [Provider] with a
// capability cache, and the set of contacts who unsubscribed from the agent
// (they get SMS only until they subscribe again). It starts no goroutine
// and is safe for concurrent use.
type Transport struct {
	prov Provider
	cfg  TransportConfig

	mu           sync.Mutex // guards cache and unsubscribed
	cache        map[string]capability
	unsubscribed map[string]bool
}

var (
	_ fallback.Transport   = (*Transport)(nil)
	_ fallback.Reacher     = (*Transport)(nil)
	_ fallback.Invalidator = (*Transport)(nil)
	_ fallback.Withdrawer  = (*Transport)(nil)
)

// NewTransport wraps prov for the router. It does no I/O.
func NewTransport(prov Provider, cfg TransportConfig) *Transport {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Clock == nil {
		cfg.Clock = fallback.SystemClock{}
	}
	return &Transport{prov: prov, cfg: cfg, cache: map[string]capability{}, unsubscribed: map[string]bool{}}
}

// Provider returns the provider the transport sends through, for what the
// router does not do: read receipts, typing, and revoking by message ID.
func (t *Transport) Provider() Provider { return t.prov }

// Route returns fallback.RouteRCS.
func (t *Transport) Route() fallback.Route { return fallback.RouteRCS }

// Reachable asks the provider whether the agent can reach msg.To, from the
// cache when it can. A file message is unreachable without a media store; a
// contact who unsubscribed is unreachable without asking.
func (t *Transport) Reachable(ctx context.Context, msg *fallback.Message) (bool, error) {
	if msg.File != nil && t.cfg.Media == nil {
		return false, nil
	}
	now := t.cfg.Clock.Now()
	t.mu.Lock()
	if t.unsubscribed[msg.To] {
		t.mu.Unlock()
		return false, nil
	}
	if c, ok := t.cache[msg.To]; ok && now.Before(c.until) {
		t.mu.Unlock()
		return c.reachable, nil
	}
	t.mu.Unlock()
	ok, _, err := t.prov.Capability(ctx, msg.To)
	if err != nil {
		return false, err
	}
	ttl := t.cfg.UnreachableTTL
	if ok {
		ttl = t.cfg.ReachableTTL
	}
	t.mu.Lock()
	t.cache[msg.To] = capability{reachable: ok, until: now.Add(ttl)}
	t.mu.Unlock()
	return ok, nil
}

// Invalidate forgets the cached capability of a number.
func (t *Transport) Invalidate(e164 string) {
	t.mu.Lock()
	delete(t.cache, e164)
	t.mu.Unlock()
}

// SetSubscribed records an UNSUBSCRIBE (false) or SUBSCRIBE (true) event
// of a contact: an unsubscribed contact is not reachable by RCS until they
// subscribe again. The set is kept in memory only.
func (t *Transport) SetSubscribed(e164 string, subscribed bool) {
	t.mu.Lock()
	if subscribed {
		delete(t.unsubscribed, e164)
	} else {
		t.unsubscribed[e164] = true
	}
	t.mu.Unlock()
}

// Send sends msg by RCS. The provider's message ID is derived from the
// Matrix event ID, so a retry is never a second message. Errors map the
// provider's onto the router's classes: ErrNotRCS and ErrAuth are
// unreachable (the next route takes the message), ErrTemporary temporary,
// ErrPermanent permanent.
func (t *Transport) Send(ctx context.Context, msg *fallback.Message) (*fallback.Receipt, error) {
	if t.cfg.Budget == nil {
		return t.send(ctx, msg)
	}
	if err := t.cfg.Budget.Take(ctx, budgetName, t.cfg.PerDay); err != nil {
		return nil, fallback.Unreachable(fmt.Errorf("RCS is capped for today (network.rcs.rate_per_day): %w", err))
	}
	rcpt, err := t.send(ctx, msg)
	if err != nil {
		if rerr := t.cfg.Budget.Return(ctx, budgetName); rerr != nil {
			t.cfg.Log.Warn("failed to give back an unsent RCS message's use of today's budget", zap.Error(rerr))
		}
	}
	return rcpt, err
}

func (t *Transport) send(ctx context.Context, msg *fallback.Message) (*fallback.Receipt, error) {
	out := &OutboundMessage{EventID: msg.ID, Text: msg.Text, TTL: t.cfg.MessageTTL}
	if msg.File != nil {
		out.Text = ""
		out.File = &FileRef{URL: msg.File.URL, Name: msg.File.Name, MIMEType: msg.File.MIMEType, Size: msg.File.Size}
	}
	id, err := t.prov.Send(ctx, msg.To, out)
	switch {
	case err == nil:
		return &fallback.Receipt{Route: fallback.RouteRCS, RemoteID: id, Parts: 1}, nil
	case errors.Is(err, ErrNotRCS):
		t.Invalidate(msg.To)
		return nil, fallback.Unreachable(err)
	case errors.Is(err, ErrAuth):
		t.cfg.Log.Error("the RCS provider refused bubbled's credentials; messages go by the next route until network.rcs is fixed", zap.Error(err))
		return nil, fallback.Unreachable(err)
	case errors.Is(err, ErrTemporary):
		return nil, fallback.Temporary(err)
	case errors.Is(err, ErrPermanent):
		return nil, fallback.Permanent(err)
	default:
		return nil, err
	}
}

// Revoke takes back the RCS message sent for Matrix event eventID, when
// it fell back to another route, so the contact does not get it twice.
// Failures are logged, not returned: the other route already has it.
func (t *Transport) Revoke(ctx context.Context, to, eventID string) {
	if err := t.prov.Revoke(ctx, to, MessageID(eventID, 0)); err != nil && !errors.Is(err, ErrNotRCS) {
		t.cfg.Log.Warn("failed to revoke an undelivered RCS message", zap.Error(err))
	}
}

// Withdraw revokes an RCS message the router is about to re-send down the
// ladder (fallback.Withdrawer): it runs before the SMS is sent.
func (t *Transport) Withdraw(ctx context.Context, msg *fallback.Message) {
	t.Revoke(ctx, msg.To, msg.ID)
}
