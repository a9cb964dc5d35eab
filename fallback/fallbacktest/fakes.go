// Package fallbacktest has fakes for testing code built on package fallback
// without a homeserver, an RCS provider or a modem: a Clock advanced by
// hand, a scriptable Transport, a Directory, a recording Notifier and Sleeper, and a
// conformance suite for Transport implementations.
package fallbacktest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/fallback"
)

// Clock is a fallback.Clock whose time moves only when Advance is called.
// Timers fire inside Advance, in the caller's goroutine, in time order.
// Safe for concurrent use.
type Clock struct {
	mu     sync.Mutex // guards the fields below
	now    time.Time
	seq    int
	timers []*clockTimer // not fired, not stopped
}

type clockTimer struct {
	c   *Clock
	at  time.Time
	seq int
	f   func()
}

var _ fallback.Clock = (*Clock)(nil)

// NewClock returns a Clock showing start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f for Now()+d. A timer due now (d <= 0) fires at the
// next Advance, Advance(0) included.
func (c *Clock) AfterFunc(d time.Duration, f func()) fallback.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &clockTimer{c: c, at: c.now.Add(d), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return t
}

// Stop cancels the timer; it reports whether the timer had not fired yet.
func (t *clockTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	i := slices.Index(t.c.timers, t)
	if i < 0 {
		return false
	}
	t.c.timers = slices.Delete(t.c.timers, i, i+1)
	return true
}

// Advance moves the clock forward by d, firing each timer due on the way
// at its due time (Now reads its due time while it runs). Timers set by a
// firing func fire too when they fall within d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *clockTimer
		for _, t := range c.timers {
			if t.at.After(end) {
				continue
			}
			if next == nil || t.at.Before(next.at) || (t.at.Equal(next.at) && t.seq < next.seq) {
				next = t
			}
		}
		if next == nil {
			if end.After(c.now) { // another Advance may have gone further
				c.now = end
			}
			c.mu.Unlock()
			return
		}
		c.timers = slices.DeleteFunc(c.timers, func(t *clockTimer) bool { return t == next })
		if next.at.After(c.now) {
			c.now = next.at
		}
		c.mu.Unlock()
		next.f()
	}
}

// Timers returns how many timers are waiting.
func (c *Clock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Sleeper records the waits asked of it and returns at once (or with the
// context's error when it is done). With Clock set, it also advances that
// clock by each wait, so timers due meanwhile fire. Safe for concurrent use.
type Sleeper struct {
	// Clock, when set, is advanced by each wait.
	Clock *Clock

	mu     sync.Mutex
	delays []time.Duration
}

// Sleep is the fallback.Options.Sleep function.
func (s *Sleeper) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	s.delays = append(s.delays, d)
	s.mu.Unlock()
	if s.Clock != nil {
		s.Clock.Advance(d)
	}
	return nil
}

// Delays returns the waits asked so far.
func (s *Sleeper) Delays() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.delays)
}

// Transport is a scriptable fallback.Transport that is also a
// fallback.Reacher and a fallback.Invalidator. By default it reaches every
// number and every Send succeeds with a receipt "<route>-<n>". Safe for
// concurrent use.
type Transport struct {
	route fallback.Route

	// OnSend, when set before use, runs at the start of each Send (after
	// the context check); a non-nil error is returned as the Send's.
	OnSend func(ctx context.Context, msg *fallback.Message) error

	mu          sync.Mutex // guards the fields below
	script      []error
	sent        []fallback.Message
	attempts    int
	unreachable map[string]bool
	reachErr    error
	reachCalls  int
	invalidated []string
}

var (
	_ fallback.Transport   = (*Transport)(nil)
	_ fallback.Reacher     = (*Transport)(nil)
	_ fallback.Invalidator = (*Transport)(nil)
)

// NewTransport returns a Transport for route.
func NewTransport(route fallback.Route) *Transport {
	return &Transport{route: route, unreachable: make(map[string]bool)}
}

// Route returns the route given to NewTransport.
func (t *Transport) Route() fallback.Route { return t.route }

// Fail scripts the results of the next Sends, in order: a non-nil error
// fails that Send, nil lets it succeed. Once the script is used up, Sends
// succeed.
func (t *Transport) Fail(errs ...error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.script = append(t.script, errs...)
}

// Send records msg and returns a receipt, or the next scripted error. It
// fails with ctx.Err() when ctx is done, and with fallback.ErrUnreachable for
// a number SetReachable said no to.
func (t *Transport) Send(ctx context.Context, msg *fallback.Message) (*fallback.Receipt, error) {
	t.mu.Lock()
	t.attempts++
	t.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fake %s transport: %w", t.route, err)
	}
	if t.OnSend != nil {
		if err := t.OnSend(ctx, msg); err != nil {
			return nil, err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.unreachable[msg.To] {
		return nil, fmt.Errorf("fake %s transport: %w", t.route, fallback.ErrUnreachable)
	}
	if len(t.script) > 0 {
		err := t.script[0]
		t.script = t.script[1:]
		if err != nil {
			return nil, err
		}
	}
	t.sent = append(t.sent, *msg)
	return &fallback.Receipt{RemoteID: fmt.Sprintf("%s-%d", t.route, len(t.sent)), Parts: 1}, nil
}

// SetReachable says whether Reachable answers yes for number e164.
func (t *Transport) SetReachable(e164 string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.unreachable[e164] = !ok
}

// SetReachError makes Reachable fail with err (nil: stop failing).
func (t *Transport) SetReachError(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reachErr = err
}

// Reachable answers from SetReachable and SetReachError.
func (t *Transport) Reachable(ctx context.Context, msg *fallback.Message) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reachCalls++
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if t.reachErr != nil {
		return false, t.reachErr
	}
	return !t.unreachable[msg.To], nil
}

// Invalidate records e164.
func (t *Transport) Invalidate(e164 string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.invalidated = append(t.invalidated, e164)
}

// Sent returns the messages sent successfully, in order.
func (t *Transport) Sent() []fallback.Message {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.sent)
}

// Attempts returns how many times Send was called.
func (t *Transport) Attempts() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.attempts
}

// ReachCalls returns how many times Reachable was called.
func (t *Transport) ReachCalls() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reachCalls
}

// Invalidated returns the numbers passed to Invalidate, in order.
func (t *Transport) Invalidated() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.invalidated)
}

// Directory is a fallback.Directory and fallback.Invalidator backed by a
// map, like a warm cache. Numbers it does not know get a negative answer.
// Safe for concurrent use.
type Directory struct {
	mu          sync.Mutex // guards the fields below
	answers     map[string]fallback.Answer
	err         error
	lookups     int
	invalidated []string
}

var (
	_ fallback.Directory   = (*Directory)(nil)
	_ fallback.Invalidator = (*Directory)(nil)
)

// NewDirectory returns an empty Directory.
func NewDirectory() *Directory {
	return &Directory{answers: make(map[string]fallback.Answer)}
}

// Set records that e164 belongs to mxid (empty: a negative answer), found in
// source at fetched.
func (d *Directory) Set(e164 string, mxid id.UserID, source string, fetched time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.answers[e164] = fallback.Answer{MXID: mxid, Source: source, Fetched: fetched}
}

// SetError makes Lookup fail with err (nil: stop failing).
func (d *Directory) SetError(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
}

// Lookup answers from Set, or fails with the SetError error.
func (d *Directory) Lookup(ctx context.Context, e164 string) (fallback.Answer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lookups++
	if err := ctx.Err(); err != nil {
		return fallback.Answer{}, err
	}
	if d.err != nil {
		return fallback.Answer{}, d.err
	}
	return d.answers[e164], nil
}

// Invalidate records e164; the answer stays (a real cache would fetch it
// again and, here, find the same).
func (d *Directory) Invalidate(e164 string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.invalidated = append(d.invalidated, e164)
}

// Lookups returns how many times Lookup was called.
func (d *Directory) Lookups() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lookups
}

// Invalidated returns the numbers passed to Invalidate, in order.
func (d *Directory) Invalidated() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.invalidated)
}

// Notifier records what a fallback.Router tells it. Safe for concurrent use.
type Notifier struct {
	mu       sync.Mutex // guards the fields below
	changes  []fallback.RouteChange
	fellBack []fallback.FellBack
}

var _ fallback.Notifier = (*Notifier)(nil)

// RouteChanged records c.
func (n *Notifier) RouteChanged(_ context.Context, c fallback.RouteChange) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.changes = append(n.changes, c)
}

// MessageFellBack records f.
func (n *Notifier) MessageFellBack(_ context.Context, f fallback.FellBack) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fellBack = append(n.fellBack, f)
}

// Changes returns the route changes so far, in order.
func (n *Notifier) Changes() []fallback.RouteChange {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.changes)
}

// FellBacks returns the fallbacks so far, in order.
func (n *Notifier) FellBacks() []fallback.FellBack {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.fellBack)
}
