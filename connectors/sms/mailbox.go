package sms

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.uber.org/zap"
)

// mailbox is one durable mailbox of a Line (inbound messages, outcomes,
// calls): items are persisted first, then handed to the bridge's handler
// in order, at least once, until the handler returns nil. Its one
// goroutine, the pump, starts with start and ends with stop; wake and
// setHandler may be called from any goroutine.
type mailbox[T any] struct {
	k    *link
	what string // for logs: "SMS", "SMS outcome", "incoming call"
	// pending returns items not handed yet, oldest first (a batch; the
	// pump asks again until it is empty); mark records one as handed;
	// name describes one in errors.
	pending func(context.Context) ([]T, error)
	mark    func(context.Context, T) error
	name    func(T) string

	kick chan struct{}
	run  loop

	mu      sync.Mutex // guards handler
	handler func(context.Context, T) error
}

func newMailbox[T any](k *link, what string, h func(context.Context, T) error,
	pending func(context.Context) ([]T, error), mark func(context.Context, T) error, name func(T) string) *mailbox[T] {
	return &mailbox[T]{k: k, what: what, handler: h, pending: pending, mark: mark, name: name, kick: make(chan struct{}, 1)}
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

// wake tells the pump that items may be waiting; it never blocks.
func (b *mailbox[T]) wake() { wake(b.kick) }

// start starts the pump.
func (b *mailbox[T]) start(ctx context.Context) { b.run.start(ctx, b.pump) }

// stop ends the pump and waits for it.
func (b *mailbox[T]) stop() { b.run.stop() }

// pump hands the pending items over at start and when woken, and again
// with the Line's retry policy while that fails. It returns when ctx ends.
func (b *mailbox[T]) pump(ctx context.Context) {
	var retry <-chan time.Time
	failures := 0
	b.wake()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		case <-retry:
		}
		err := b.handAll(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failures, retry = 0, nil
			continue
		}
		failures++
		delay := b.k.retry.Delay(failures, rand.Float64())
		b.k.log.Warn("failed to hand "+b.what+" to the bridge; will retry", zap.Duration("retry_in", delay), zap.Error(err))
		retry = b.k.after(delay)
	}
}

// handAll passes the pending items to the handler in order, marking each
// handed as soon as the handler accepted it, and stops at the first
// failure. What is marked is never passed again. Without a handler the
// items wait.
func (b *mailbox[T]) handAll(ctx context.Context) error {
	b.mu.Lock()
	h := b.handler
	b.mu.Unlock()
	if h == nil {
		return nil
	}
	for {
		items, err := b.pending(ctx)
		if err != nil || len(items) == 0 {
			return err
		}
		var notYet error
		for _, it := range items {
			if err := h(ctx, it); errors.Is(err, ErrNotYet) {
				notYet = fmt.Errorf("handle %s: %w", b.name(it), err)
				continue
			} else if err != nil {
				return fmt.Errorf("handle %s: %w", b.name(it), err)
			}
			if err := b.mark(ctx, it); err != nil {
				return err
			}
		}
		if notYet != nil {
			return notYet // the waiting items stay pending: ask again later
		}
	}
}
