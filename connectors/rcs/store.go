package rcs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"go.mau.fi/util/dbutil"
)

// StoredEvent is one persisted webhook event.
type StoredEvent struct {
	// ID orders events by arrival.
	ID int64
	// Provider and Key identify the event; (Provider, Key) is unique.
	Provider string
	Key      string
	// Payload is the verified JSON: RBM's decoded message.data, or MaaP's
	// request body.
	Payload []byte
	// ReceivedAt is when the webhook accepted it.
	ReceivedAt time.Time
	// Attempts counts failed hand-overs to the consumer.
	Attempts int
}

// EventStore persists verified webhook events so each is handed to the
// consumer once (a replay of a stored key is dropped) and none is lost in
// a crash between the 200 and the hand-over. Implementations are safe for
// concurrent use.
type EventStore interface {
	// Put stores an event unless (provider, key) is already stored; it
	// reports whether it did.
	Put(ctx context.Context, provider, key string, payload []byte, receivedAt time.Time) (inserted bool, err error)
	// Pending returns up to limit events not yet processed, oldest first.
	Pending(ctx context.Context, limit int) ([]StoredEvent, error)
	// MarkProcessed records that the event was handed over (or given up
	// on, with a non-empty failure) at at.
	MarkProcessed(ctx context.Context, id int64, at time.Time, failure string) error
	// RecordFailure counts one failed hand-over and returns the count.
	RecordFailure(ctx context.Context, id int64, reason string) (attempts int, err error)
	// Prune deletes processed events received before before; replays older
	// than that would be handled again.
	Prune(ctx context.Context, before time.Time) (int64, error)
}

// versionTable is the rcs package's own schema version table.
const versionTable = "bubbled_rcs_version"

var upgradeTable = dbutil.BuildUpgradeTable().
	WithRaw(0, 1, 0, "create RCS webhook event table", dbutil.TxnModeOn, upgradeV1).
	WithRaw(1, 2, 0, "create RCS media table", dbutil.TxnModeOn, upgradeMedia).
	Finish()

func upgradeV1(ctx context.Context, db *dbutil.Database) error {
	idCol, blob := "id INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"
	if db.Dialect == dbutil.Postgres {
		idCol, blob = "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "BYTEA"
	}
	// Times are Unix milliseconds. processed_at is NULL while the event
	// waits for the consumer; failure is set when the worker gave up.
	queries := []string{
		`CREATE TABLE bubbled_rcs_event (
			` + idCol + `,
			provider     TEXT    NOT NULL,
			event_key    TEXT    NOT NULL,
			payload      ` + blob + ` NOT NULL,
			received_at  BIGINT  NOT NULL,
			attempts     INTEGER NOT NULL DEFAULT 0,
			last_error   TEXT    NOT NULL DEFAULT '',
			processed_at BIGINT,
			failure      TEXT    NOT NULL DEFAULT '',
			UNIQUE (provider, event_key)
		)`,
		`CREATE INDEX bubbled_rcs_event_pending_idx ON bubbled_rcs_event (processed_at, id)`,
	}
	for _, q := range queries {
		if _, err := db.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// Upgrade creates or updates the RCS tables (bubbled_rcs_event,
// bubbled_rcs_media) in db, tracking their schema version in
// bubbled_rcs_version. Safe to call on every start; it must run before a
// [DBEventStore] or a [MediaStore] is used.
func Upgrade(ctx context.Context, db *dbutil.Database) error {
	if err := db.Child(versionTable, upgradeTable, nil).Upgrade(ctx); err != nil {
		return fmt.Errorf("upgrade RCS tables: %w", err)
	}
	return nil
}

// DBEventStore is the [EventStore] on a go.mau.fi/util/dbutil database
// (SQLite or Postgres). Run [Upgrade] first. Safe for concurrent use.
type DBEventStore struct {
	db *dbutil.Database
}

var _ EventStore = (*DBEventStore)(nil)

// NewDBEventStore returns a store on db; it does no I/O.
func NewDBEventStore(db *dbutil.Database) *DBEventStore { return &DBEventStore{db: db} }

// Put implements EventStore with INSERT … ON CONFLICT DO NOTHING.
func (s *DBEventStore) Put(ctx context.Context, provider, key string, payload []byte, receivedAt time.Time) (bool, error) {
	res, err := s.db.Exec(ctx, `
		INSERT INTO bubbled_rcs_event (provider, event_key, payload, received_at)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (provider, event_key) DO NOTHING`,
		provider, key, payload, receivedAt.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("store RCS event: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store RCS event: %w", err)
	}
	return n == 1, nil
}

// Pending implements EventStore.
func (s *DBEventStore) Pending(ctx context.Context, limit int) ([]StoredEvent, error) {
	rows, err := s.db.Query(ctx, `
		SELECT id, provider, event_key, payload, received_at, attempts
		FROM bubbled_rcs_event WHERE processed_at IS NULL ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list pending RCS events: %w", err)
	}
	defer rows.Close()
	var out []StoredEvent
	for rows.Next() {
		var e StoredEvent
		var ms int64
		if err := rows.Scan(&e.ID, &e.Provider, &e.Key, &e.Payload, &ms, &e.Attempts); err != nil {
			return nil, fmt.Errorf("list pending RCS events: %w", err)
		}
		e.ReceivedAt = time.UnixMilli(ms)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list pending RCS events: %w", err)
	}
	return out, nil
}

// MarkProcessed implements EventStore.
func (s *DBEventStore) MarkProcessed(ctx context.Context, id int64, at time.Time, failure string) error {
	_, err := s.db.Exec(ctx, `UPDATE bubbled_rcs_event SET processed_at=$2, failure=$3 WHERE id=$1`,
		id, at.UnixMilli(), failure)
	if err != nil {
		return fmt.Errorf("mark RCS event processed: %w", err)
	}
	return nil
}

// RecordFailure implements EventStore.
func (s *DBEventStore) RecordFailure(ctx context.Context, id int64, reason string) (int, error) {
	var n int
	err := s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if _, err := s.db.Exec(ctx, `UPDATE bubbled_rcs_event SET attempts=attempts+1, last_error=$2 WHERE id=$1`, id, reason); err != nil {
			return err
		}
		return s.db.QueryRow(ctx, `SELECT attempts FROM bubbled_rcs_event WHERE id=$1`, id).Scan(&n)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("record RCS event failure: event %d not found", id)
	} else if err != nil {
		return 0, fmt.Errorf("record RCS event failure: %w", err)
	}
	return n, nil
}

// Prune implements EventStore.
func (s *DBEventStore) Prune(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.Exec(ctx, `DELETE FROM bubbled_rcs_event WHERE processed_at IS NOT NULL AND received_at < $1`, before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune RCS events: %w", err)
	}
	return res.RowsAffected()
}
