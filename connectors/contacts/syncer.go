package contacts

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/phone"
)

const defaultHTTPTimeout = 30 * time.Second

// Store keeps the last good book of each source, so names survive a
// restart while a source is down.
type Store interface {
	// Load returns the stored book of a source, or nil when there is none.
	Load(ctx context.Context, source string) (Book, error)
	// Save replaces the stored book of a source.
	Save(ctx context.Context, source string, b Book, at time.Time) error
}

// Options configure a [Syncer].
type Options struct {
	// Sources are read in order; an earlier source wins a number.
	Sources []Source
	// Region is the default region for numbers in national form.
	Region string
	// Interval is the time between syncs (15m when 0).
	Interval time.Duration
	// Store keeps the last good books; nil keeps them in memory only.
	Store Store
	// OnChange is called, from the syncer's goroutine, with the numbers
	// whose contact changed, after the new book is in place.
	OnChange func(ctx context.Context, changed []string)
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	Log *zap.Logger
}

// Syncer keeps a [Book] in sync with its sources. Start runs its loop; Book
// and Lookup may be called from any goroutine.
type Syncer struct {
	opts Options

	mu    sync.RWMutex
	book  Book            // guarded by mu
	bySrc map[string]Book // last good book of each source; guarded by syncMu
	// numbers remembers how raw TEL values parsed, so that a sync of an
	// unchanged address book parses nothing again; guarded by syncMu.
	numbers map[string]parsed
	syncMu  sync.Mutex // one sync at a time

	cancel context.CancelFunc
	done   chan struct{}
}

// New makes a syncer; it does no I/O.
func New(opts Options) *Syncer {
	if opts.Interval <= 0 {
		opts.Interval = 15 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	return &Syncer{opts: opts, book: Book{}, bySrc: map[string]Book{}, numbers: map[string]parsed{}}
}

type parsed struct {
	e164 string
	err  error
}

// parse is phone.Parse in the default region, remembered. Called with syncMu held.
func (s *Syncer) parse(raw string) (string, error) {
	if p, ok := s.numbers[raw]; ok {
		return p.e164, p.err
	}
	if len(s.numbers) > maxRemembered {
		clear(s.numbers)
	}
	e164, err := phone.Parse(raw, s.opts.Region)
	s.numbers[raw] = parsed{e164, err}
	return e164, err
}

// maxRemembered bounds the numbers a syncer remembers.
const maxRemembered = 100_000

// Book returns the current book (never nil; do not modify it).
func (s *Syncer) Book() Book {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.book
}

// Lookup returns the contact of an E.164 number.
func (s *Syncer) Lookup(e164 string) (Contact, bool) { return s.Book().Lookup(e164) }

// Load puts the stored books in place (no source is asked) and reports
// every stored number as changed. Start calls it.
func (s *Syncer) Load(ctx context.Context) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.opts.Store == nil {
		return nil
	}
	for _, src := range s.opts.Sources {
		b, err := s.opts.Store.Load(ctx, src.Name())
		if err != nil {
			return fmt.Errorf("load the stored contacts of %s: %w", src.Name(), err)
		}
		if b != nil {
			s.bySrc[src.Name()] = b
		}
	}
	s.publish(ctx)
	return nil
}

// Sync reads every source once. A source that fails keeps its last good
// book and its failure is logged; the returned error joins the failures.
func (s *Syncer) Sync(ctx context.Context) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	var errs []error
	for _, src := range s.opts.Sources {
		log := s.opts.Log.With(zap.String("source", src.Name()))
		cards, err := src.Fetch(ctx)
		if err != nil {
			n := len(s.bySrc[src.Name()])
			log.Warn("failed to read contacts; keeping the last good names", zap.Error(err), zap.Int("kept_contacts", n))
			errs = append(errs, fmt.Errorf("%s: %w", src.Name(), err))
			continue
		}
		book, problems := fromCards(cards, s.opts.Region, s.parse)
		for _, p := range problems {
			log.Debug("left out part of a contact", zap.String("problem", p))
		}
		s.bySrc[src.Name()] = book
		if s.opts.Store != nil {
			if err := s.opts.Store.Save(ctx, src.Name(), book, s.opts.Now()); err != nil {
				log.Warn("failed to store the contacts; a restart may show older names", zap.Error(err))
			}
		}
		log.Debug("read contacts", zap.Int("cards", len(cards)), zap.Int("numbers", len(book)))
	}
	s.publish(ctx)
	return errors.Join(errs...)
}

// publish merges the source books and reports what changed. Called with syncMu held.
func (s *Syncer) publish(ctx context.Context) {
	books := make([]Book, 0, len(s.opts.Sources))
	for _, src := range s.opts.Sources {
		books = append(books, s.bySrc[src.Name()])
	}
	next := merge(books...)
	s.mu.Lock()
	old := s.book
	s.book = next
	s.mu.Unlock()
	if changed := Changed(old, next); len(changed) > 0 {
		s.opts.Log.Info("updated contacts", zap.Int("changed", len(changed)), zap.Int("numbers", len(next)))
		if s.opts.OnChange != nil {
			s.opts.OnChange(ctx, changed)
		}
	}
}

// Start loads the stored books, then syncs now and every Interval in its
// own goroutine until Stop.
func (s *Syncer) Start(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.Load(ctx); err != nil {
			s.opts.Log.Warn("failed to load the stored contacts", zap.Error(err))
		}
		t := time.NewTicker(s.opts.Interval)
		defer t.Stop()
		for {
			_ = s.Sync(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

// Stop ends the loop and waits for it.
func (s *Syncer) Stop() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
}
