package sms

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/phone"
)

// markTimeout bounds recording one item as handed. The mark outlives the
// pump's context: an item the handler took while the Line closed is still
// recorded, so the next start does not hand it twice.
const markTimeout = 10 * time.Second

// mailbox is one durable mailbox of a Line (inbound messages, outcomes,
// calls): items are persisted first, then handed to the bridge's handler,
// at least once, until the handler returns nil. Items of one key (an
// inbound message's conversation) are handed in order, one at a time;
// items of different keys are handed by up to lanes goroutines at once, so
// a slow or failing conversation holds back only itself. A mailbox without
// key has one key: everything in order. The pump goroutine starts with
// start and ends with stop, after the lanes it started; wake and setHandler
// may be called from any goroutine.
type mailbox[T any] struct {
	k    *link
	what string // for logs: "SMS", "SMS outcome", "incoming call"
	// pending returns items not handed yet, oldest first (a batch; the
	// pump asks again until it is empty); mark records one as handed;
	// name describes one in errors; key, if set, names its conversation.
	pending func(context.Context) ([]T, error)
	mark    func(context.Context, T) error
	name    func(T) string
	key     func(T) string
	lanes   int

	kick chan struct{}
	run  loop

	mu      sync.Mutex // guards handler
	handler func(context.Context, T) error
}

func newMailbox[T any](k *link, what string, h func(context.Context, T) error,
	pending func(context.Context) ([]T, error), mark func(context.Context, T) error, name func(T) string) *mailbox[T] {
	return &mailbox[T]{k: k, what: what, handler: h, pending: pending, mark: mark, name: name, lanes: 1, kick: make(chan struct{}, 1)}
}

// withLanes hands items of different keys (key) concurrently, on up to n
// lanes. Call it before start.
func (b *mailbox[T]) withLanes(n int, key func(T) string) *mailbox[T] {
	b.lanes, b.key = max(n, 1), key
	return b
}

// setHandler sets (or replaces) the handler; items recorded while there
// was none are handed now.
func (b *mailbox[T]) setHandler(h func(context.Context, T) error) {
	b.mu.Lock()
	b.handler = h
	b.mu.Unlock()
	b.wake()
}

// hasHandler reports whether a handler is set.
func (b *mailbox[T]) hasHandler() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.handler != nil
}

// wake tells the pump that items may be waiting, and that keys waiting
// after a failure may be tried at once; it never blocks.
func (b *mailbox[T]) wake() { wake(b.kick) }

// start starts the pump.
func (b *mailbox[T]) start(ctx context.Context) { b.run.start(ctx, b.pump) }

// stop ends the pump and waits for it and its lanes.
func (b *mailbox[T]) stop() { b.run.stop() }

// laneEnd is what a lane reports to the pump when it is done.
type laneEnd struct {
	key string
	err error
}

// pumpState is the pump's bookkeeping; only the pump goroutine touches it.
type pumpState struct {
	busy      map[string]bool      // keys with a lane running
	failures  map[string]int       // failed handovers in a row, per key
	until     map[string]time.Time // a failed key waits until then
	listFails int                  // failed listings in a row
	listUntil time.Time
}

// pump lists the pending items at start, when woken and when a lane ends,
// starts a lane for each key that has items and none running (up to
// b.lanes), and retries a key that failed with the Line's retry policy. It
// returns when ctx ends, after its lanes.
func (b *mailbox[T]) pump(ctx context.Context) {
	st := &pumpState{busy: map[string]bool{}, failures: map[string]int{}, until: map[string]time.Time{}}
	ended := make(chan laneEnd, b.lanes) // never blocks a lane: one slot each
	var lanes sync.WaitGroup
	defer lanes.Wait()
	var retry <-chan time.Time
	b.wake()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
			clear(st.until)
			st.listUntil = time.Time{}
		case e := <-ended:
			b.laneEnded(ctx, st, e)
		case <-retry:
		}
		if ctx.Err() != nil {
			return
		}
		b.dispatch(ctx, st, ended, &lanes)
		retry = b.nextRetry(st)
	}
}

// laneEnded records how a lane ended: a failed key waits with backoff.
func (b *mailbox[T]) laneEnded(ctx context.Context, st *pumpState, e laneEnd) {
	delete(st.busy, e.key)
	if e.err == nil {
		delete(st.failures, e.key)
		delete(st.until, e.key)
		return
	}
	if ctx.Err() != nil {
		return
	}
	st.failures[e.key]++
	delay := b.k.retry.Delay(st.failures[e.key], rand.Float64())
	st.until[e.key] = time.Now().Add(delay)
	fields := []zap.Field{zap.Duration("retry_in", delay), zap.Error(e.err)}
	if b.key != nil {
		fields = append(fields, zap.String("conversation", phone.Mask(e.key)))
	}
	b.k.log.Warn("failed to hand "+b.what+" to the bridge; will retry", fields...)
}

// dispatch lists the pending items and starts a lane for each key that has
// some, is not running and is not waiting after a failure, while lanes are
// free. Keys left out are tried again when a lane ends or a wait is over.
// Without a handler the items wait.
func (b *mailbox[T]) dispatch(ctx context.Context, st *pumpState, ended chan<- laneEnd, lanes *sync.WaitGroup) {
	b.mu.Lock()
	h := b.handler
	b.mu.Unlock()
	now := time.Now()
	if h == nil || len(st.busy) >= b.lanes || now.Before(st.listUntil) {
		return
	}
	items, err := b.pending(ctx)
	if err != nil {
		if ctx.Err() == nil {
			st.listFails++
			delay := b.k.retry.Delay(st.listFails, rand.Float64())
			st.listUntil = now.Add(delay)
			b.k.log.Warn("failed to list "+b.what+" to hand to the bridge; will retry", zap.Duration("retry_in", delay), zap.Error(err))
		}
		return
	}
	st.listFails = 0
	var order []string
	groups := map[string][]T{}
	for _, it := range items {
		k := ""
		if b.key != nil {
			k = b.key(it)
		}
		if _, seen := groups[k]; !seen {
			order = append(order, k)
		}
		groups[k] = append(groups[k], it)
	}
	for _, k := range order {
		if len(st.busy) >= b.lanes {
			return
		}
		if st.busy[k] || now.Before(st.until[k]) {
			continue
		}
		st.busy[k] = true
		lanes.Add(1)
		go func(k string, items []T) {
			defer lanes.Done()
			ended <- laneEnd{k, b.handLane(ctx, h, items)}
		}(k, groups[k])
	}
}

// nextRetry is a channel that fires when the earliest failed key or
// listing may be tried again, or nil when none waits.
func (b *mailbox[T]) nextRetry(st *pumpState) <-chan time.Time {
	now := time.Now()
	next := st.listUntil
	for k, u := range st.until {
		if !u.After(now) {
			delete(st.until, k)
			continue
		}
		if next.IsZero() || u.Before(next) {
			next = u
		}
	}
	if next.IsZero() || !next.After(now) {
		return nil
	}
	return b.k.after(next.Sub(now))
}

// handLane passes one key's items to the handler in order, marking each
// handed as soon as the handler accepted it, and stops at the first
// failure so that the key's later items wait behind it. What is marked is
// never passed again. An item the handler cannot take yet (ErrNotYet) is
// passed over and makes the lane report an error, so it is offered again.
func (b *mailbox[T]) handLane(ctx context.Context, h func(context.Context, T) error, items []T) error {
	var notYet error
	for _, it := range items {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := h(ctx, it); errors.Is(err, ErrNotYet) {
			notYet = fmt.Errorf("handle %s: %w", b.name(it), err)
			continue
		} else if err != nil {
			return fmt.Errorf("handle %s: %w", b.name(it), err)
		}
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), markTimeout)
		err := b.mark(mctx, it)
		cancel()
		if err != nil {
			return err
		}
	}
	return notYet
}
