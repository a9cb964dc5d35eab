package contacts

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.mau.fi/util/dbutil"
)

const versionTable = "bubbled_contacts_version"

var upgradeTable = dbutil.BuildUpgradeTable().
	WithRaw(0, 1, 0, "create contacts snapshot table", dbutil.TxnModeOn, func(ctx context.Context, db *dbutil.Database) error {
		blob := "BLOB"
		if db.Dialect == dbutil.Postgres {
			blob = "BYTEA"
		}
		_, err := db.Exec(ctx, `CREATE TABLE bubbled_contacts_snapshot (
			source    TEXT PRIMARY KEY,
			book      `+blob+` NOT NULL,
			synced_at BIGINT NOT NULL
		)`)
		return err
	}).
	Finish()

// Upgrade creates or updates the contacts table (bubbled_contacts_snapshot)
// in db. Safe to call on every start.
func Upgrade(ctx context.Context, db *dbutil.Database) error {
	if err := db.Child(versionTable, upgradeTable, nil).Upgrade(ctx); err != nil {
		return fmt.Errorf("upgrade contacts tables: %w", err)
	}
	return nil
}

// DBStore is the [Store] on a dbutil database (SQLite or Postgres); run
// [Upgrade] first. Safe for concurrent use.
type DBStore struct{ db *dbutil.Database }

var _ Store = (*DBStore)(nil)

// NewDBStore returns a store on db; it does no I/O.
func NewDBStore(db *dbutil.Database) *DBStore { return &DBStore{db: db} }

// Load implements Store.
func (s *DBStore) Load(ctx context.Context, source string) (Book, error) {
	var raw []byte
	err := s.db.QueryRow(ctx, `SELECT book FROM bubbled_contacts_snapshot WHERE source = $1`, source).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var b Book
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("decode stored contacts: %w", err)
	}
	return b, nil
}

// Save implements Store.
func (s *DBStore) Save(ctx context.Context, source string, b Book, at time.Time) error {
	raw, err := json.Marshal(b)
	if err != nil {
		return err
	}
	_, err = s.db.Exec(ctx, `INSERT INTO bubbled_contacts_snapshot (source, book, synced_at) VALUES ($1, $2, $3)
		ON CONFLICT (source) DO UPDATE SET book = excluded.book, synced_at = excluded.synced_at`, source, raw, at.UnixMilli())
	return err
}
