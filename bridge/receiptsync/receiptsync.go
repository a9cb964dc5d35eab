// Package receiptsync reads the read receipts of the rooms the bridge bot
// is in from the bot's own /sync. Homeservers push receipts to appservices
// only with MSC2409 ephemeral events (Synapse); Dendrite and Conduit do not,
// and without receipts a message that went through Matrix could never be
// confirmed and always fell back to SMS. The sync asks for m.receipt only.
package receiptsync

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
)

// Options configure a Syncer.
type Options struct {
	// Client is the bot's client (the appservice's bot client).
	Client *mautrix.Client
	// Handle gets each receipt event, with its RoomID set and its content
	// parsed. It runs on the sync goroutine.
	Handle func(ctx context.Context, evt *event.Event)
	// Active says whether receipts are wanted now (a message awaits one);
	// while it is false no /sync runs, and the next one picks up from where
	// the last ended. nil: always.
	Active func() bool
	// Log is where failures are logged; nil is quiet.
	Log *zap.Logger
	// PollTimeout is the long-poll of one /sync (default 30 s).
	PollTimeout time.Duration
	// RetryInitial and RetryMax bound the wait after a failed /sync
	// (default 1 s doubling to 1 min).
	RetryInitial, RetryMax time.Duration
}

// Filter is what the sync asks for: the rooms' m.receipt events and
// nothing else (no timeline, state, presence or account data).
func Filter() *mautrix.Filter {
	none := func() *mautrix.FilterPart { return &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}} }
	timeline := none()
	timeline.Limit = 1 // 0 cannot be written (omitzero); not_types drops it anyway
	return &mautrix.Filter{
		AccountData: none(),
		Presence:    none(),
		Room: &mautrix.RoomFilter{
			AccountData: none(),
			State:       none(),
			Timeline:    timeline,
			Ephemeral:   &mautrix.FilterPart{Types: []event.Type{event.EphemeralEventReceipt}},
		},
	}
}

// idleCheck is how often an inactive Syncer asks Active again.
const idleCheck = time.Second

// Syncer is one running receipt sync.
type Syncer struct {
	opts   Options
	cancel context.CancelFunc
	done   chan struct{}

	lastError time.Time // of the last logged failure; the sync goroutine's own
}

// Start starts the sync in a goroutine of its own; Stop ends it.
func Start(opts Options) *Syncer {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.PollTimeout <= 0 {
		opts.PollTimeout = 30 * time.Second
	}
	if opts.RetryInitial <= 0 {
		opts.RetryInitial = time.Second
	}
	if opts.RetryMax < opts.RetryInitial {
		opts.RetryMax = max(time.Minute, opts.RetryInitial)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Syncer{opts: opts, cancel: cancel, done: make(chan struct{})}
	go s.run(ctx)
	return s
}

// Stop ends the sync and waits for it.
func (s *Syncer) Stop() {
	s.cancel()
	<-s.done
}

func (s *Syncer) run(ctx context.Context) {
	defer close(s.done)
	wait := s.opts.RetryInitial
	filterID, since := "", ""
	for ctx.Err() == nil {
		if s.opts.Active != nil && !s.opts.Active() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(idleCheck):
			}
			continue
		}
		var err error
		if filterID == "" {
			filterID, err = s.createFilter(ctx)
		}
		if err == nil {
			since, err = s.syncOnce(ctx, filterID, since)
		}
		if err == nil {
			wait = s.opts.RetryInitial
			continue
		}
		if ctx.Err() != nil {
			return
		}
		s.logError(err, wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, s.opts.RetryMax)
	}
}

func (s *Syncer) createFilter(ctx context.Context) (string, error) {
	resp, err := s.opts.Client.CreateFilter(ctx, Filter())
	if err != nil {
		return "", err
	}
	return resp.FilterID, nil
}

// syncOnce runs one /sync from since and hands its receipts over; it
// returns the next batch token.
func (s *Syncer) syncOnce(ctx context.Context, filterID, since string) (string, error) {
	resp, err := s.opts.Client.SyncRequest(ctx, int(s.opts.PollTimeout/time.Millisecond), since, filterID, false, event.PresenceOffline)
	if err != nil {
		return since, err
	}
	if resp.NextBatch == "" {
		return since, errors.New("the homeserver's /sync answer has no next_batch")
	}
	for roomID, room := range resp.Rooms.Join {
		for _, evt := range room.Ephemeral.Events {
			if evt.Type != event.EphemeralEventReceipt {
				continue
			}
			evt.RoomID = roomID
			evt.Type.Class = event.EphemeralEventType
			evt.Mautrix.EventSource = event.SourceEphemeral
			if err := evt.Content.ParseRaw(evt.Type); err != nil && !errors.Is(err, event.ErrContentAlreadyParsed) {
				s.opts.Log.Debug("skipped a receipt event that does not parse", zap.Error(err))
				continue
			}
			s.opts.Handle(ctx, evt)
		}
	}
	return resp.NextBatch, nil
}

// logError logs a failed sync at most once a minute.
func (s *Syncer) logError(err error, wait time.Duration) {
	if time.Since(s.lastError) < time.Minute {
		return
	}
	s.lastError = time.Now()
	s.opts.Log.Warn("failed to read read receipts from the bot's sync; trying again", zap.Duration("retry_in", wait), zap.Error(err))
}
