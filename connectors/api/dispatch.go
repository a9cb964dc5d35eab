package api

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/fallback"
)

// dispatch.go hands stored messages to the router and mirrors them into
// Matrix. Two goroutines, started by Start and ended by Stop, work from the
// database, so what a restart interrupted is picked up where it stopped.

// batch is how many due messages one pass reads.
const batch = 100

// mirrorRetry paces the retries of a message that could not be posted
// into its Matrix room (homeserver away).
var mirrorRetry = fallback.RetryPolicy{Initial: 5 * time.Second, Max: 5 * time.Minute, Multiplier: 2, Jitter: 0.2}

// Start starts the routing and mirror goroutines. They first pick up what
// an earlier run left: messages stored but not yet routed or mirrored.
func (s *Server) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.loop(ctx, s.kickRoute, s.routePass) }()
	go func() { defer s.wg.Done(); s.loop(ctx, s.kickMirror, s.mirrorPass) }()
}

// Stop ends the goroutines and waits for them. Messages in flight stay
// stored and are taken up by the next Start.
func (s *Server) Stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
}

// loop runs pass until ctx ends; pass returns how long to wait at most
// before the next pass (a kick wakes it earlier).
func (s *Server) loop(ctx context.Context, kick chan struct{}, pass func(context.Context) time.Duration) {
	for ctx.Err() == nil {
		wait := pass(ctx)
		if wait <= 0 {
			continue
		}
		select {
		case <-ctx.Done():
		case <-kick:
		case <-fallback.After(s.cfg.Clock, wait):
		}
	}
}

// routePass hands due messages to the router, Workers at a time.
func (s *Server) routePass(ctx context.Context) time.Duration {
	now := s.cfg.Clock.Now()
	msgs, err := s.cfg.Store.dueForRouting(ctx, now, batch)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("failed to read API messages to send", zap.Error(err))
		}
		return 5 * time.Second
	}
	// One conversation's messages (a recipient, from the line asked for
	// or the router's choice) go one after the other, in the order they
	// were taken (an alert's firing before its resolution); conversations
	// go Workers at a time.
	var order []string
	byTo := map[string][]*Message{}
	for _, m := range msgs {
		key := m.Line + " " + m.To
		if _, seen := byTo[key]; !seen {
			order = append(order, key)
		}
		byTo[key] = append(byTo[key], m)
	}
	sem := make(chan struct{}, s.cfg.Workers)
	var wg sync.WaitGroup
	for _, to := range order {
		sem <- struct{}{}
		wg.Add(1)
		go func(ms []*Message) {
			defer func() { <-sem; wg.Done() }()
			for _, m := range ms {
				if !s.route(ctx, m) {
					return // the later ones wait behind it for the next pass
				}
			}
		}(byTo[to])
	}
	wg.Wait()
	if len(msgs) == batch {
		return 0
	}
	next, err := s.cfg.Store.nextRouting(ctx)
	if err != nil || next.IsZero() {
		return time.Minute
	}
	return max(next.Sub(s.cfg.Clock.Now()), time.Millisecond)
}

// route hands one message to the router and records what came of it; it
// reports whether the router took it.
func (s *Server) route(ctx context.Context, m *Message) bool {
	log := s.log.With(zap.String("id", m.ID), zap.String("token", m.Token), zap.String("to", phone.Mask(m.To)))
	rt, err := s.cfg.Sender.Send(ctx, m)
	now := s.cfg.Clock.Now()
	if err == nil {
		// What was done is recorded even when Stop came meanwhile.
		ctx := context.WithoutCancel(ctx)
		if err := s.cfg.Store.markRouted(ctx, m.ID, string(rt), now); err != nil {
			log.Warn("failed to record that an API message was routed; it is handed over again", zap.Error(err))
			return false
		}
		if rt != fallback.RouteSMS {
			// SMS reports its own progress (outcomes); other routes are
			// sent once the router has them.
			s.setStatus(ctx, m.ID, StatusSent, "")
		}
		log.Debug("routed an API message", zap.String("route", string(rt)))
		return true
	}
	if ctx.Err() != nil {
		return false
	}
	class := fallback.Classify(err)
	if class == fallback.ClassTemporary && now.Sub(m.Created) < s.cfg.GiveUpAfter {
		delay := s.cfg.Retry.Delay(m.attempts+1, rand.Float64())
		log.Info("could not route an API message yet; trying again later", zap.Duration("in", delay), zap.Error(err))
		if err := s.cfg.Store.retryRouting(ctx, m.ID, m.attempts+1, now.Add(delay), "waiting: "+err.Error(), now); err != nil {
			log.Warn("failed to record a routing attempt", zap.Error(err))
		}
		return false
	}
	reason := err.Error()
	if class == fallback.ClassTemporary {
		reason = "no route could take it within " + s.cfg.GiveUpAfter.String() + ": " + reason
	}
	log.Warn("failed to send an API message", zap.String("reason", reason))
	s.setStatus(ctx, m.ID, StatusFailed, reason)
	return true // failed for good: the ones behind it may go
}

// mirrorPass posts due messages into their Matrix rooms, one at a time in
// the order they were taken, so a room shows them in order.
func (s *Server) mirrorPass(ctx context.Context) time.Duration {
	msgs, err := s.cfg.Store.dueForMirror(ctx, s.cfg.Clock.Now(), batch)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("failed to read API messages to show in Matrix", zap.Error(err))
		}
		return 5 * time.Second
	}
	wait := time.Minute
	for _, m := range msgs {
		if ctx.Err() != nil {
			return 0
		}
		if err := s.cfg.Sender.Mirror(ctx, m); err != nil {
			if ctx.Err() != nil {
				return 0
			}
			delay := mirrorRetry.Delay(1, rand.Float64())
			s.log.Warn("failed to show an API message in its Matrix room; trying again later", zap.String("id", m.ID), zap.Duration("in", delay), zap.Error(err))
			if err := s.cfg.Store.retryMirror(ctx, m.ID, s.cfg.Clock.Now().Add(delay)); err != nil {
				s.log.Warn("failed to record a mirror attempt", zap.Error(err))
			}
			wait = min(wait, delay)
			continue
		}
		if err := s.cfg.Store.markMirrored(context.WithoutCancel(ctx), m.ID); err != nil {
			s.log.Warn("failed to record that an API message is in Matrix", zap.Error(err))
		}
	}
	if len(msgs) == batch {
		return 0
	}
	return wait
}

// Outcome records what a route reported about a message (the SMS line's
// outcomes, via the bridge). routerID is the ID the router had
// (RouterIDPrefix + ID); other IDs are ignored and reported false.
func (s *Server) Outcome(ctx context.Context, routerID string, st Status, reason string) bool {
	id, ok := strings.CutPrefix(routerID, RouterIDPrefix)
	if !ok {
		return false
	}
	s.setStatus(ctx, id, st, reason)
	return true
}

func (s *Server) setStatus(ctx context.Context, id string, st Status, reason string) {
	if _, err := s.cfg.Store.SetStatus(ctx, id, st, reason, s.cfg.Clock.Now()); err != nil && !errors.Is(err, context.Canceled) {
		s.log.Warn("failed to update an API message's status", zap.String("id", id), zap.Error(err))
	}
}
