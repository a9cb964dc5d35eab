package aslistener

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.mau.fi/util/dbutil"
	"go.uber.org/zap"
)

// FailpointAfterAck is the failpoint that kills the process right after the
// homeserver was answered 200 for the first transaction with a message in
// it, before any of its events is handled.
const FailpointAfterAck = "after-txn-ack"

// txnIDRetention is how long transaction IDs are remembered: the homeserver
// retries a transaction until it is answered, never after.
const txnIDRetention = 7 * 24 * time.Hour

// batchSize is how many journaled events the worker reads at a time.
const batchSize = 64

// maxFresh bounds the events kept in memory for a worker that is behind.
const maxFresh = 1024

// Options configure a Journal. Only Log is required.
type Options struct {
	// Keep says which events are journaled (and so handled); the others are
	// answered and dropped. nil keeps every event.
	Keep func(Event) bool
	// Extras receives each new transaction once it is journaled, for the
	// parts that are state rather than events (MSC3202 device lists and
	// one-time key counts). It must not block.
	Extras func(*Transaction)
	// Memory keeps the journal in memory, as mautrix does: a crash loses
	// what was answered but not handled. Only tests use it, to show the
	// difference the journal makes.
	Memory bool
	// Failpoint, when FailpointAfterAck, makes the process die as if
	// killed right after acknowledging a message. Only tests set it.
	Failpoint string
	// Crash is what the failpoint calls; nil sends SIGKILL to the process.
	Crash func()
	// Ahead may take a kept event at once, when its transaction is
	// journaled, instead of in order (a to-device room key must not wait
	// behind the message it decrypts). It reports whether it took the
	// event; the worker then deletes it without handing it over, unless a
	// crash came first: then it is handed over in order after the restart.
	// It must not block. nil takes nothing.
	Ahead func(Entry) bool
	// Log receives the journal's own lines.
	Log *zap.Logger
}

// Journal stores every authenticated appservice transaction before the
// homeserver is answered, and hands the stored events, in order, to one
// worker goroutine (Start) that deletes each once it is handled. A slow
// event therefore delays the events after it, never the homeserver.
// PutTransaction is safe for concurrent use; Start and Stop are called once.
type Journal struct {
	store store
	opts  Options
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
	fired atomic.Bool

	// aheadMu is held while a transaction is stored and offered to Ahead,
	// and by the worker while it checks taken, so that the worker never
	// sees an event before Ahead had its chance.
	aheadMu sync.Mutex
	taken   map[int64]bool // by Ahead, not yet deleted by the worker

	// fresh holds what add stored, in order (add appends under aheadMu,
	// so in commit order), for the worker once it has read the table to
	// its end: then each stored event reaches it without a read. Past
	// maxFresh (the worker far behind) fresh is dropped and the worker
	// reads the table again. Guarded by aheadMu.
	fresh     []Entry
	fromFresh bool  // the worker is caught up and takes fresh
	dropped   int64 // counts the times fresh was dropped

	startOnce sync.Once
	stopOnce  sync.Once
}

// New creates or upgrades the journal's tables in db (schema version in
// bubbled_journal_version) and returns the journal. With opts.Memory db is
// not used.
func New(ctx context.Context, db *dbutil.Database, opts Options) (*Journal, error) {
	j := &Journal{opts: opts, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), taken: map[int64]bool{}}
	if j.opts.Log == nil {
		j.opts.Log = zap.NewNop()
	}
	if opts.Memory {
		j.store = &memStore{seen: map[string]int64{}}
		return j, nil
	}
	if err := db.Child(versionTable, upgrades, nil).Upgrade(ctx); err != nil {
		return nil, fmt.Errorf("create the transaction journal: %w", err)
	}
	j.store = &dbStore{db: db}
	return j, nil
}

// PutTransaction serves PUT /_matrix/app/v1/transactions/{txnID}. The
// request must already be authenticated and its body capped (Handler does
// both). The homeserver gets 200 once the transaction's kept events are
// stored (a repeated transaction ID is answered 200 and stored once), 500
// when they cannot be stored (it will send them again), 413 for a body over
// the cap and 400 for a body that is not a transaction.
func (j *Journal) PutTransaction(w http.ResponseWriter, r *http.Request) {
	txnID := r.PathValue("txnID")
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "M_TOO_LARGE", fmt.Sprintf("the transaction is over %d bytes", tooBig.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "could not read the transaction body")
		return
	}
	txn, err := ParseTransaction(body)
	if err != nil {
		j.opts.Log.Warn("refused a transaction that is not JSON", zap.String("txn_id", txnID), zap.Error(err))
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", err.Error())
		return
	}
	kept := j.keep(txn)
	dup, err := j.add(r.Context(), txnID, kept)
	if err != nil {
		j.opts.Log.Error("failed to journal a transaction; the homeserver will send it again", zap.String("txn_id", txnID), zap.Error(err))
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", "could not store the transaction")
		return
	}
	if !dup && j.opts.Extras != nil {
		j.opts.Extras(txn)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("{}"))
	if dup {
		j.opts.Log.Debug("ignored a repeated transaction", zap.String("txn_id", txnID))
		return
	}
	j.opts.Log.Debug("journaled a transaction", zap.String("txn_id", txnID), zap.Int("events", len(txn.Events)), zap.Int("kept", len(kept)))
	if j.opts.Failpoint == FailpointAfterAck && hasMessage(kept) && j.fired.CompareAndSwap(false, true) {
		j.crash(w)
	}
	if len(kept) > 0 {
		select {
		case j.wake <- struct{}{}:
		default:
		}
	}
}

// add stores a transaction and offers its events to Ahead.
func (j *Journal) add(ctx context.Context, txnID string, kept []Event) (dup bool, err error) {
	if len(kept) == 0 {
		// Nothing to store, nor to keep from being handled twice: most
		// transactions are the bridge's own events coming back.
		return false, nil
	}
	j.aheadMu.Lock()
	defer j.aheadMu.Unlock()
	seqs, dup, err := j.store.add(ctx, txnID, kept, time.Now().UnixMilli())
	if err != nil || dup {
		return dup, err
	}
	for i, e := range kept {
		entry := Entry{Seq: seqs[i], TxnID: txnID, Class: e.Class, Raw: e.Raw}
		if j.opts.Ahead != nil && j.opts.Ahead(entry) {
			j.taken[seqs[i]] = true
		}
		j.fresh = append(j.fresh, entry)
	}
	if len(j.fresh) > maxFresh {
		j.dropFresh() // the worker reads the table
	}
	return false, nil
}

// nextEntries is the worker's next batch: from fresh once it is caught up,
// else from the table (and a short batch means it is caught up: fresh then
// holds everything stored since, minus what that read returned).
func (j *Journal) nextEntries(ctx context.Context, handled int64) (entries []Entry, fromTable bool, err error) {
	j.aheadMu.Lock()
	if j.fromFresh {
		entries, j.fresh = j.fresh, nil
		j.aheadMu.Unlock()
		return entries, false, nil
	}
	dropped := j.dropped
	j.aheadMu.Unlock()
	entries, err = j.store.next(ctx, batchSize)
	if err != nil || len(entries) == batchSize {
		return entries, true, err
	}
	last := handled
	if len(entries) > 0 {
		last = entries[len(entries)-1].Seq
	}
	j.aheadMu.Lock()
	defer j.aheadMu.Unlock()
	if j.dropped != dropped {
		return entries, true, nil // fresh lost events stored since the read
	}
	j.fromFresh = true
	// What the read returned, and what was handled before, is not fresh.
	keep := j.fresh[:0]
	for _, e := range j.fresh {
		if e.Seq > last {
			keep = append(keep, e)
		}
	}
	j.fresh = keep
	return entries, true, nil
}

// wasTaken reports whether Ahead took the event, and forgets it.
func (j *Journal) wasTaken(seq int64) bool {
	j.aheadMu.Lock()
	defer j.aheadMu.Unlock()
	ok := j.taken[seq]
	delete(j.taken, seq)
	return ok
}

// keep filters a transaction's events and logs the ones that were not events.
func (j *Journal) keep(txn *Transaction) []Event {
	if txn.Skipped > 0 {
		j.opts.Log.Warn("dropped parts of a transaction that are not events (no JSON object with a type)", zap.Int("dropped", txn.Skipped))
	}
	if j.opts.Keep == nil {
		return txn.Events
	}
	kept := make([]Event, 0, len(txn.Events))
	for _, e := range txn.Events {
		if j.opts.Keep(e) {
			kept = append(kept, e)
		}
	}
	return kept
}

func hasMessage(evts []Event) bool {
	for _, e := range evts {
		if e.Class == ClassTimeline && !e.State && (e.Type == "m.room.message" || e.Type == "m.room.encrypted") {
			return true
		}
	}
	return false
}

// crash delivers the answer, then dies the way SIGKILL or a power cut
// would: no deferred function, no shutdown.
func (j *Journal) crash(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	j.opts.Log.Warn("failpoint: killing the process after acknowledging a transaction", zap.String("failpoint", j.opts.Failpoint))
	_ = j.opts.Log.Sync()
	if j.opts.Crash != nil {
		j.opts.Crash()
		return
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL is not delivered synchronously
}

// Backlog counts the journaled events not handled yet (the
// bubbled_journal_backlog gauge). Safe for concurrent use.
func (j *Journal) Backlog(ctx context.Context) (int, error) { return j.store.backlog(ctx) }

// Start starts the worker: it hands each journaled event, oldest first, to
// handle, and deletes it once handle returns (unless Stop ended handle's
// context meanwhile: then it stays for the next start); events journaled before a
// crash come first. Between batches it forgets transaction IDs older than
// a week (at most hourly). Stop ends it.
func (j *Journal) Start(ctx context.Context, handle func(context.Context, Entry)) {
	j.startOnce.Do(func() { go j.run(ctx, handle) })
}

// prune forgets transaction IDs older than txnIDRetention, at most hourly.
func (j *Journal) prune(ctx context.Context, last *time.Time) {
	if time.Since(*last) < time.Hour {
		return
	}
	*last = time.Now()
	if err := j.store.prune(ctx, time.Now().Add(-txnIDRetention).UnixMilli()); err != nil {
		j.opts.Log.Warn("failed to forget old transaction IDs", zap.Error(err))
	}
}

// run is the worker goroutine; it owns the reading and deleting of entries.
func (j *Journal) run(ctx context.Context, handle func(context.Context, Entry)) {
	defer close(j.done)
	// handle gets a context that ends with Stop, so that an event waiting
	// for something (a Megolm session) gives up, and is kept for the next
	// start instead of being deleted half-handled.
	// The worker's own reads and deletes keep ctx, so that Stop never cuts
	// one short.
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-j.stop:
			cancel()
		case <-hctx.Done():
		}
	}()
	var pruned time.Time
	var handled int64 // the last seq handled
	for {
		j.prune(ctx, &pruned)
		entries, fromTable, err := j.nextEntries(ctx, handled)
		if err != nil {
			j.opts.Log.Error("failed to read the transaction journal; retrying", zap.Error(err))
			if !j.sleep(time.Second) {
				return
			}
			continue
		}
		if len(entries) == 0 {
			if !j.waitWake() {
				return
			}
			continue
		}
		all := true
		for _, e := range entries {
			select {
			case <-j.stop:
				return
			default:
			}
			if !j.wasTaken(e.Seq) {
				handle(hctx, e)
			}
			if hctx.Err() != nil {
				return // stopped while handling it: it stays journaled
			}
			if err := j.store.done(ctx, e.Seq); err != nil {
				j.opts.Log.Error("failed to delete a handled event from the journal; it may be handled again", zap.Error(err))
				j.readTable()
				if !j.sleep(time.Second) {
					return
				}
				all = false
				break
			}
			handled = e.Seq
		}
		// A short batch from the table was all there was, and fresh
		// events each sent a wake: wait for the next one.
		if all && (!fromTable || len(entries) < batchSize) && !j.waitWake() {
			return
		}
	}
}

// readTable sends the worker back to the table (after a failed delete, the
// rest of its batch is read again from there).
func (j *Journal) readTable() {
	j.aheadMu.Lock()
	defer j.aheadMu.Unlock()
	j.dropFresh()
}

// dropFresh empties fresh; the worker reads the table until it is caught
// up again. Caller holds aheadMu.
func (j *Journal) dropFresh() {
	j.fresh, j.fromFresh = nil, false
	j.dropped++
}

// waitWake waits for a new transaction or Stop; it reports whether to go on.
func (j *Journal) waitWake() bool {
	select {
	case <-j.wake:
		return true
	case <-j.stop:
		return false
	}
}

// sleep waits d or until Stop; it reports whether to go on.
func (j *Journal) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-j.stop:
		return false
	}
}

// Stop asks the worker to stop after the event it is handling and waits
// for it until ctx ends. What is not handled yet stays journaled.
func (j *Journal) Stop(ctx context.Context) error {
	j.startOnce.Do(func() { close(j.done) }) // never started: no worker to wait for
	j.stopOnce.Do(func() { close(j.stop) })
	select {
	case <-j.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop the journal worker: %w", ctx.Err())
	}
}
