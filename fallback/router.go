package fallback

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/phone"
)

// DefaultConfirmTimeout is the usual wait for a confirmation before a message
// that went by Matrix or RCS is re-sent down the ladder (the config default of
// fallback.confirm_timeout). Options.ConfirmTimeout itself defaults to 0: off.
const DefaultConfirmTimeout = 5 * time.Minute

// DefaultRemember is how long a Router remembers the message IDs it sent, so
// that a message delivered to it twice is not sent twice.
const DefaultRemember = 24 * time.Hour

// Options configures a Router. Only Transports is required.
type Options struct {
	// Order is the ladder, best route first. Default DefaultOrder(): matrix,
	// rcs, sms. Routes of the ladder without a transport (or, for the Matrix
	// route, without a Directory) are left out; routes with a transport that
	// are not in the ladder are used only by SendVia and Pin.
	Order []Route
	// Transports are the routes' transports, at most one per route.
	Transports []Transport
	// Directory answers whether a number is on Matrix. Without it the Matrix
	// route is never used.
	Directory Directory
	// Notifier is told of route changes and fallbacks; nil drops them.
	Notifier Notifier
	// ConfirmTimeout is how long a message that went by a confirming route
	// (Matrix, RCS) may stay unconfirmed before it is re-sent down the
	// ladder. 0 turns the timers off (see DefaultConfirmTimeout).
	ConfirmTimeout time.Duration
	// Retry says how temporary errors are retried; zero fields take the
	// defaults of RetryPolicy.
	Retry RetryPolicy
	// AttemptTimeout bounds one call of Transport.Send; an attempt that runs
	// out of it counts as a temporary failure. 0 means no bound besides the
	// caller's context.
	AttemptTimeout time.Duration
	// Remember is how long sent message IDs are remembered for
	// de-duplication; 0 means DefaultRemember.
	Remember time.Duration
	// Clock is the source of time and timers; nil means SystemClock.
	Clock Clock
	// Sleep waits between retries; nil waits on Clock. Tests inject one that
	// returns at once.
	Sleep func(ctx context.Context, d time.Duration) error
	// Random returns uniform numbers in [0, 1) for retry jitter; nil means
	// math/rand/v2. It must be safe for concurrent use.
	Random func() float64
	// Log receives the Router's logs (phone numbers masked); nil means none.
	Log *zap.Logger
}

// Router picks a route for each outgoing message and keeps the per
// conversation state (pin, last route) and the per message state
// (routes used, confirmation timer). All methods are safe for concurrent
// use. It owns no goroutine: confirmation timers run on the Clock, and Close
// stops them and waits for re-sends in progress.
type Router struct {
	// Read-only after New.
	ladder         []Route // Options.Order without the routes that cannot work
	transports     map[Route]Transport
	reachers       map[Route]Reacher
	invalidators   map[Route]Invalidator
	dir            Directory
	dirInvalidator Invalidator
	note           Notifier
	confirmTimeout time.Duration
	attemptTimeout time.Duration
	remember       time.Duration
	retry          RetryPolicy
	clock          Clock
	sleep          func(ctx context.Context, d time.Duration) error
	random         func() float64
	log            *zap.Logger

	// ctx is the context of re-sends started by timers; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts re-sends started by timers; Close waits for them.
	wg sync.WaitGroup

	mu      sync.Mutex // guards the fields below
	closed  bool
	convs   map[string]*convState
	msgs    map[string]*record // by message ID
	pending map[string]*record // the msgs awaiting a confirmation (timer set)
	fifo    []fifoEntry        // msgs in the order they were added, for pruning
	gen     uint64             // timer generation counter
}

// convState is what the Router keeps per conversation (guarded by Router.mu).
type convState struct {
	pin  Route
	last Route
	peer id.UserID
	// readUpTo is, per confirming route, the newest message time the
	// contact has read (ConfirmRead): a read mark can arrive before the
	// Router has the message it covers (the contact's client is faster
	// than the bridge's event stream).
	readUpTo map[Route]time.Time
}

// record is what the Router keeps per message (guarded by Router.mu).
type record struct {
	conv     string
	msg      Message // as last handed to a transport
	used     []Route // routes that took the message
	inflight bool    // a Send, SendVia or re-send is running for it
	rcpt     *Receipt
	// Confirmation timer; timer is nil when nothing is awaited.
	timer     Timer
	gen       uint64
	waiting   Route
	confirmBy time.Time
}

type fifoEntry struct {
	id  string
	rec *record
	at  time.Time
}

// ConvState is a conversation's routing state, for the bridge to store
// (e.g. in portal metadata) and to give back with Router.Restore after a
// restart, so that route changes are not announced twice.
type ConvState struct {
	// Pin is the route the conversation is pinned to; "" means automatic.
	Pin Route
	// Last is the route the conversation's last message went by.
	Last Route
	// Peer is the contact's Matrix user when Last is RouteMatrix.
	Peer id.UserID
}

// Decision is the route the Router would take for a message now.
type Decision struct {
	// Route is the chosen route; "" when none can reach the contact.
	Route Route
	// Peer is the contact's Matrix user when Route is RouteMatrix.
	Peer id.UserID
	// Pinned tells that the conversation is pinned to Route.
	Pinned bool
	// Skipped lists the better routes passed over, and why.
	Skipped []Skip
}

// New checks opts and returns a Router. It does no I/O and starts nothing.
// Errors name the bad option and the fix.
func New(opts Options) (*Router, error) {
	r := &Router{
		transports:     make(map[Route]Transport),
		reachers:       make(map[Route]Reacher),
		invalidators:   make(map[Route]Invalidator),
		dir:            opts.Directory,
		note:           opts.Notifier,
		confirmTimeout: opts.ConfirmTimeout,
		attemptTimeout: opts.AttemptTimeout,
		remember:       opts.Remember,
		retry:          opts.Retry.withDefaults(),
		clock:          opts.Clock,
		sleep:          opts.Sleep,
		random:         opts.Random,
		log:            opts.Log,
		convs:          make(map[string]*convState),
		msgs:           make(map[string]*record),
		pending:        make(map[string]*record),
	}
	if err := r.retry.validate(); err != nil {
		return nil, fmt.Errorf("fallback options: %w", err)
	}
	switch {
	case opts.ConfirmTimeout < 0:
		return nil, fmt.Errorf("fallback options: confirm timeout %s must not be negative (0 turns it off)", opts.ConfirmTimeout)
	case opts.AttemptTimeout < 0:
		return nil, fmt.Errorf("fallback options: attempt timeout %s must not be negative (0 means none)", opts.AttemptTimeout)
	case opts.Remember < 0:
		return nil, fmt.Errorf("fallback options: remember %s must not be negative", opts.Remember)
	}
	if err := r.addTransports(opts.Transports); err != nil {
		return nil, err
	}
	if inv, ok := opts.Directory.(Invalidator); ok {
		r.dirInvalidator = inv
	}
	if err := r.buildLadder(opts.Order); err != nil {
		return nil, err
	}
	if r.remember == 0 {
		r.remember = DefaultRemember
	}
	if r.clock == nil {
		r.clock = SystemClock{}
	}
	if r.sleep == nil {
		r.sleep = func(ctx context.Context, d time.Duration) error { return Sleep(ctx, r.clock, d) }
	}
	if r.random == nil {
		r.random = rand.Float64
	}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// addTransports files each transport under its route, with its optional
// abilities.
func (r *Router) addTransports(ts []Transport) error {
	for _, t := range ts {
		if t == nil {
			return errors.New("fallback options: a transport is nil")
		}
		rt := t.Route()
		if err := checkRoute(rt); err != nil {
			return fmt.Errorf("fallback options: transport %T: %w", t, err)
		}
		if r.transports[rt] != nil {
			return fmt.Errorf("fallback options: two transports for route %s (%T and %T): keep one", rt, r.transports[rt], t)
		}
		r.transports[rt] = t
		if rc, ok := t.(Reacher); ok {
			r.reachers[rt] = rc
		}
		if inv, ok := t.(Invalidator); ok {
			r.invalidators[rt] = inv
		}
	}
	return nil
}

// buildLadder keeps the routes of order (DefaultOrder when empty) that can
// be used; it needs the transports and the directory in place.
func (r *Router) buildLadder(order []Route) error {
	if len(order) == 0 {
		order = DefaultOrder()
	}
	for i, rt := range order {
		if err := checkRoute(rt); err != nil {
			return fmt.Errorf("fallback options: order[%d]: %w", i, err)
		}
		if slices.Contains(order[:i], rt) {
			return fmt.Errorf("fallback options: order lists %s twice: list each route once", rt)
		}
		if r.usable(rt) == nil {
			r.ladder = append(r.ladder, rt)
		}
	}
	if len(r.ladder) == 0 {
		return fmt.Errorf("fallback options: no route of the order %v has a transport: configure a modem line (sms) or another route", order)
	}
	return nil
}

func checkRoute(rt Route) error {
	switch rt {
	case RouteMatrix, RouteRCS, RouteSMS:
		return nil
	}
	return fmt.Errorf("unknown route %q: use matrix, rcs or sms", string(rt))
}

// usable reports why route rt cannot be used at all, or nil.
func (r *Router) usable(rt Route) error {
	if r.transports[rt] == nil {
		return fmt.Errorf("route %s: %w", rt, ErrNoTransport)
	}
	if rt == RouteMatrix && r.dir == nil {
		return fmt.Errorf("route %s: %w: the Matrix route needs a directory", rt, ErrNoTransport)
	}
	return nil
}

// Ladder returns the routes Send tries, in order: Options.Order without the
// routes that have no transport.
func (r *Router) Ladder() []Route { return slices.Clone(r.ladder) }

// Close stops the confirmation timers, cancels the re-sends they started and
// waits for those to return. Sends after Close fail with ErrClosed. It is
// safe to call more than once.
func (r *Router) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	for id, rec := range r.pending {
		rec.timer.Stop()
		rec.timer = nil
		delete(r.pending, id)
	}
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return nil
}

// Pin makes a conversation use one route only (no ladder, no fallback):
// RouteAuto (or "") removes the pin. Pinning a route without a transport
// fails. A pin does not touch messages already sent.
func (r *Router) Pin(conv string, rt Route) error {
	if rt == RouteAuto {
		rt = ""
	}
	if rt != "" {
		if err := checkRoute(rt); err != nil {
			return fmt.Errorf("pin route: %w", err)
		}
		if err := r.usable(rt); err != nil {
			return fmt.Errorf("pin route: %w (configure it first, or pin another route)", err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.convLocked(conv).pin = rt
	return nil
}

// State returns a conversation's routing state.
func (r *Router) State(conv string) ConvState {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.convs[conv]
	if !ok {
		return ConvState{}
	}
	return ConvState{Pin: st.pin, Last: st.last, Peer: st.peer}
}

// Restore sets a conversation's routing state, as stored from State or from
// RouteChange notices before a restart. A pin on a route that is no longer
// configured is dropped (with a log line), so the conversation follows the
// ladder.
func (r *Router) Restore(conv string, s ConvState) {
	pin := s.Pin
	if pin == RouteAuto {
		pin = ""
	}
	if pin != "" && (checkRoute(pin) != nil || r.usable(pin) != nil) {
		r.log.Warn("dropped pin on a route that is not configured", zap.String("route", string(pin)))
		pin = ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.convLocked(conv)
	st.pin, st.last, st.peer = pin, s.Last, s.Peer
}

func (r *Router) convLocked(conv string) *convState {
	st := r.convs[conv]
	if st == nil {
		st = &convState{}
		r.convs[conv] = st
	}
	return st
}

func (r *Router) ladderFor(pin Route) []Route {
	if pin != "" {
		return []Route{pin}
	}
	return r.ladder
}

func checkMessage(msg *Message) error {
	switch {
	case msg == nil:
		return errors.New("send: nil message")
	case msg.ID == "":
		return errors.New("send: the message has no ID (pass the Matrix event ID)")
	case msg.Conversation == "":
		return errors.New("send: the message has no conversation key")
	case msg.To == "":
		return errors.New("send: the message has no recipient number")
	}
	return nil
}

// Decide returns the route Send would take for msg now, without sending:
// the pin, or the first route of the ladder that can reach the contact
// (directory answer, Reacher). It fails only when ctx is done, or with a
// *SendError wrapping ErrNoRoute when no route can reach the contact.
func (r *Router) Decide(ctx context.Context, msg *Message) (Decision, error) {
	if err := checkMessage(msg); err != nil {
		return Decision{}, err
	}
	r.mu.Lock()
	var pin Route
	if st := r.convs[msg.Conversation]; st != nil {
		pin = st.pin
	}
	r.mu.Unlock()
	d := Decision{Pinned: pin != ""}
	m := *msg
	for _, rt := range r.ladderFor(pin) {
		if r.usable(rt) != nil {
			continue
		}
		ok, skip, err := r.eligible(ctx, rt, &m)
		if err != nil {
			return d, err
		}
		if ok {
			d.Route, d.Peer = rt, m.Peer
			return d, nil
		}
		d.Skipped = append(d.Skipped, skip)
	}
	return d, &SendError{Class: ClassUnreachable, Skipped: d.Skipped, Err: ErrNoRoute}
}

// Send sends msg by the first route of the ladder that can reach the contact
// (or by the conversation's pinned route only), and returns the receipt of
// the route that took it. In detail:
//   - a route is passed over when its transport is missing, when the Matrix
//     route has no directory answer for msg.To (or the lookup fails), or when
//     the transport is a Reacher and says no (or fails);
//   - ErrUnreachable from a transport passes it over too;
//   - a temporary error is retried with backoff and jitter up to
//     Options.Retry.Attempts; after the last attempt the route is passed over
//     as failing (a later route may still take the message);
//   - a permanent error fails the message at once: it describes the message
//     or the contact, or the route may have delivered it, so another route
//     would not help or would send it twice;
//   - when ctx is done, Send stops.
//
// A route passed over after trying it (unreachable, or temporary errors to
// the end) has its cached knowledge invalidated: the directory answer for
// the Matrix route, the transport's own cache (Invalidator) otherwise.
//
// When the route taken differs from the conversation's last one, the
// Notifier hears RouteChanged once (for a new conversation only when the
// ladder offers a choice or the conversation is pinned). When the route
// confirms (Matrix, RCS), a lower route exists, the conversation is not
// pinned and Options.ConfirmTimeout is set, a timer starts: see Confirm.
//
// A message ID the Router has sent before is not sent again: Send returns
// the earlier receipt (or ErrDuplicate while the first Send still runs). A
// failed Send is forgotten, so it can be tried again. Errors are *SendError
// (see Classify) or input errors.
func (r *Router) Send(ctx context.Context, msg *Message) (*Receipt, error) {
	if err := checkMessage(msg); err != nil {
		return nil, err
	}
	m, now, err := r.begin(msg)
	if err != nil {
		return nil, err
	}
	if rec := r.msgs[m.ID]; rec != nil {
		defer r.mu.Unlock()
		if rec.inflight || rec.rcpt == nil {
			return nil, fmt.Errorf("send message %s: %w", m.ID, ErrDuplicate)
		}
		rc := *rec.rcpt
		return &rc, nil
	}
	pin := r.convLocked(m.Conversation).pin
	rec := r.addLocked(m, now)
	r.mu.Unlock()

	ladder := r.ladderFor(pin)
	res := r.walk(ctx, &m, ladder, nil)

	r.mu.Lock()
	rec.inflight = false
	if res.err != nil {
		r.dropLocked(m.ID, rec)
		r.mu.Unlock()
		r.log.Debug("failed to send message", zap.String("to", phone.Mask(m.To)),
			zap.Stringer("class", Classify(res.err)), zap.Error(res.err))
		return nil, res.err
	}
	rt := res.rcpt.Route
	rec.used = append(rec.used, rt)
	rec.msg = res.msg
	if pin == "" && r.timerWanted(ladder, rt, rec.used, m.Conversation, rec.msg.Created) {
		res.rcpt.ConfirmBy = r.armLocked(m.ID, rec, rt, r.confirmTimeout)
	}
	rec.rcpt = res.rcpt
	change, notify := r.routeChangeLocked(&res.msg, rt, pin != "", res.skipped)
	rc := *res.rcpt
	r.mu.Unlock()

	r.log.Debug("sent message", zap.String("to", phone.Mask(m.To)), zap.String("route", string(rt)),
		zap.Int("skipped", len(res.skipped)))
	if notify && r.note != nil {
		r.note.RouteChanged(ctx, change)
	}
	return &rc, nil
}

// begin takes the Router's copy of msg for one Send or SendVia, with Peer
// cleared (the directory sets it) and Created set, and returns with r.mu
// held, unless the Router is closed (ErrClosed, r.mu not held).
func (r *Router) begin(msg *Message) (Message, time.Time, error) {
	m := *msg
	m.Peer = ""
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return Message{}, time.Time{}, ErrClosed
	}
	now := r.clock.Now()
	if m.Created.IsZero() {
		m.Created = now
	}
	return m, now, nil
}

// SendVia sends msg by route rt now, with no ladder, no confirmation timer
// and no change to the conversation's route: the "sms <text>" command, or
// "send this message as SMS now" for a message that went another way. For
// the Matrix route the directory must know the contact. A message already
// sent by rt fails with ErrAlreadySent; when msg.ID went by another route
// and awaits a confirmation, a successful SendVia ends the wait.
func (r *Router) SendVia(ctx context.Context, msg *Message, rt Route) (*Receipt, error) {
	if err := checkMessage(msg); err != nil {
		return nil, err
	}
	if err := checkRoute(rt); err != nil {
		return nil, fmt.Errorf("send via: %w", err)
	}
	if err := r.usable(rt); err != nil {
		return nil, fmt.Errorf("send via: %w", err)
	}
	m, now, err := r.begin(msg)
	if err != nil {
		return nil, err
	}
	rec := r.msgs[m.ID]
	fresh := rec == nil
	switch {
	case fresh:
		rec = r.addLocked(m, now)
	case rec.inflight:
		r.mu.Unlock()
		return nil, fmt.Errorf("send message %s: %w", m.ID, ErrDuplicate)
	case slices.Contains(rec.used, rt):
		r.mu.Unlock()
		return nil, fmt.Errorf("send message %s by %s: %w", m.ID, rt.Title(), ErrAlreadySent)
	default:
		rec.inflight = true
		r.pauseLocked(m.ID, rec)
	}
	r.mu.Unlock()

	res := r.walk(ctx, &m, []Route{rt}, nil)

	r.mu.Lock()
	defer r.mu.Unlock()
	rec.inflight = false
	if res.err != nil {
		if fresh {
			r.dropLocked(m.ID, rec)
		} else {
			r.resumeLocked(m.ID, rec)
		}
		return nil, res.err
	}
	rec.used = append(rec.used, rt)
	rec.msg = res.msg
	rec.rcpt = res.rcpt
	rec.waiting, rec.confirmBy = "", time.Time{}
	rc := *res.rcpt
	return &rc, nil
}

// addLocked remembers a new message as in flight and prunes old ones.
func (r *Router) addLocked(m Message, now time.Time) *record {
	rec := &record{conv: m.Conversation, msg: m, inflight: true}
	r.msgs[m.ID] = rec
	r.fifo = append(r.fifo, fifoEntry{id: m.ID, rec: rec, at: now})
	r.pruneLocked(now)
	return rec
}

// dropLocked forgets a message that was not sent.
func (r *Router) dropLocked(msgID string, rec *record) {
	if r.msgs[msgID] == rec {
		delete(r.msgs, msgID)
	}
}

// pruneLocked forgets messages older than r.remember that are idle.
func (r *Router) pruneLocked(now time.Time) {
	cut := now.Add(-r.remember)
	n := 0
	for n < len(r.fifo) && r.fifo[n].at.Before(cut) {
		e := r.fifo[n]
		n++
		if r.msgs[e.id] != e.rec {
			continue
		}
		if e.rec.inflight || e.rec.timer != nil {
			r.fifo = append(r.fifo, fifoEntry{id: e.id, rec: e.rec, at: now})
			continue
		}
		delete(r.msgs, e.id)
	}
	if n > 0 {
		clear(r.fifo[:n]) // let the records go; append reallocates later
		r.fifo = r.fifo[n:]
	}
}

// routeChangeLocked updates the conversation's last route and says whether
// to announce it.
func (r *Router) routeChangeLocked(m *Message, rt Route, pinned bool, skipped []Skip) (RouteChange, bool) {
	st := r.convLocked(m.Conversation)
	peer := id.UserID("")
	if rt == RouteMatrix {
		peer = m.Peer
	}
	if st.last == rt && st.peer == peer {
		return RouteChange{}, false
	}
	c := RouteChange{
		Conversation: m.Conversation,
		To:           m.To,
		Peer:         peer,
		From:         st.last,
		Route:        rt,
		Pinned:       pinned,
		Skipped:      skipped,
		MessageID:    m.ID,
	}
	first := st.last == ""
	st.last, st.peer = rt, peer
	if first && !pinned && len(r.ladder) < 2 {
		return c, false
	}
	return c, true
}

// outcome is the result of walking a ladder.
type outcome struct {
	rcpt    *Receipt
	msg     Message // as handed to the transport that took it
	skipped []Skip
	err     error // a *SendError
}

// walk tries the routes in order, leaving out those in used, until one
// takes the message.
func (r *Router) walk(ctx context.Context, m *Message, routes []Route, used []Route) outcome {
	var o outcome
	var lastTemp *SendError
	for _, rt := range routes {
		if slices.Contains(used, rt) || r.usable(rt) != nil {
			continue
		}
		cand := *m
		cand.Peer = ""
		ok, skip, err := r.eligible(ctx, rt, &cand)
		if err != nil {
			o.err = &SendError{Route: rt, Class: ClassCancelled, Skipped: o.skipped, Err: err}
			return o
		}
		if !ok {
			o.skipped = append(o.skipped, skip)
			continue
		}
		rcpt, attempts, err := r.try(ctx, rt, &cand)
		if err == nil {
			o.rcpt, o.msg = rcpt, cand
			return o
		}
		class := Classify(err)
		if cerr := ctx.Err(); cerr != nil {
			class = ClassCancelled
			if !errors.Is(err, cerr) {
				err = fmt.Errorf("%w (last error: %w)", cerr, err)
			}
		}
		switch class {
		case ClassUnreachable:
			o.skipped = append(o.skipped, Skip{Route: rt, Reason: "is not reachable " + rt.on(), Err: err})
			r.invalidate(rt, cand.To)
		case ClassTemporary:
			o.skipped = append(o.skipped, Skip{Route: rt, Reason: "could not be reached " + rt.on() + " for now", Err: err})
			lastTemp = &SendError{Route: rt, Class: ClassTemporary, Attempts: attempts, Err: err}
			r.invalidate(rt, cand.To)
			r.log.Info("moved down the ladder after temporary errors", zap.String("route", string(rt)),
				zap.String("to", phone.Mask(cand.To)), zap.Int("attempts", attempts), zap.Error(err))
		default:
			o.err = &SendError{Route: rt, Class: class, Attempts: attempts, Skipped: o.skipped, Err: err}
			return o
		}
	}
	if lastTemp != nil {
		// Report the routes passed over before the one that kept failing.
		i := slices.IndexFunc(o.skipped, func(s Skip) bool { return s.Route == lastTemp.Route })
		lastTemp.Skipped = o.skipped[:i:i]
		o.err = lastTemp
		return o
	}
	o.err = &SendError{Class: ClassUnreachable, Skipped: o.skipped, Err: ErrNoRoute}
	return o
}

// eligible says whether route rt may reach m's contact; for the Matrix
// route it sets m.Peer from the directory. A non-nil error means ctx is done.
func (r *Router) eligible(ctx context.Context, rt Route, m *Message) (bool, Skip, error) {
	if rt == RouteMatrix {
		a, err := r.dir.Lookup(ctx, m.To)
		switch {
		case ctx.Err() != nil:
			return false, Skip{}, ctx.Err()
		case err != nil:
			return false, Skip{Route: rt, Reason: "could not be looked up on Matrix", Err: err}, nil
		case !a.Found():
			return false, Skip{Route: rt, Reason: "is not on Matrix"}, nil
		}
		m.Peer = a.MXID
	}
	rc := r.reachers[rt]
	if rc == nil {
		return true, Skip{}, nil
	}
	ok, err := rc.Reachable(ctx, m)
	switch {
	case ctx.Err() != nil:
		return false, Skip{}, ctx.Err()
	case err != nil:
		return false, Skip{Route: rt, Reason: "could not be checked " + rt.on(), Err: err}, nil
	case !ok:
		reason := "cannot be reached " + rt.on()
		switch rt {
		case RouteMatrix:
			reason = "has not joined this chat on Matrix"
		case RouteRCS:
			reason = "cannot receive RCS"
		}
		return false, Skip{Route: rt, Reason: reason}, nil
	}
	return true, Skip{}, nil
}

// try sends m by rt, retrying temporary errors with backoff. It returns the
// number of attempts made.
func (r *Router) try(ctx context.Context, rt Route, m *Message) (*Receipt, int, error) {
	t := r.transports[rt]
	for n := 1; ; n++ {
		rcpt, err := r.attempt(ctx, t, m)
		if err == nil {
			if rcpt.Route == "" {
				rcpt.Route = rt
			}
			if rcpt.At.IsZero() {
				rcpt.At = r.clock.Now()
			}
			return rcpt, n, nil
		}
		if ctx.Err() != nil || Classify(err) != ClassTemporary || n >= r.retry.Attempts {
			return nil, n, err
		}
		d := max(r.retry.Delay(n, r.random()), retryAfter(err))
		r.log.Debug("retrying send after a temporary error", zap.String("route", string(rt)),
			zap.Int("attempt", n), zap.Duration("delay", d), zap.Error(err))
		if serr := r.sleep(ctx, d); serr != nil {
			return nil, n, fmt.Errorf("wait %s before retrying (%w): %w", d, err, serr)
		}
	}
}

// attempt calls the transport once, with the attempt timeout.
func (r *Router) attempt(ctx context.Context, t Transport, m *Message) (*Receipt, error) {
	if r.attemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.attemptTimeout)
		defer cancel()
	}
	sent := *m
	rcpt, err := t.Send(ctx, &sent)
	if err != nil {
		return nil, err
	}
	if rcpt == nil {
		return &Receipt{}, nil
	}
	rc := *rcpt
	return &rc, nil
}

// invalidate forgets what is cached about to for route rt.
func (r *Router) invalidate(rt Route, to string) {
	if rt == RouteMatrix && r.dirInvalidator != nil {
		r.dirInvalidator.Invalidate(to)
	}
	if inv := r.invalidators[rt]; inv != nil {
		inv.Invalidate(to)
	}
}
