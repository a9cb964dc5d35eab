package gate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"go.mau.fi/util/dbutil"
)

// State is what an owner decided about a sender.
type State string

// The states; "" is undecided.
const (
	StateAccepted State = "accepted"
	StateBlocked  State = "blocked"
)

// Held is one quarantined message.
type Held struct {
	// Line is the line (login) the message came in on; the quarantine
	// room belongs to it.
	Line string
	// ID is the message's own ID (the SMS ID).
	ID     string
	Sender string
	Body   string
	Parts  int
	At     time.Time
}

const versionTable = "bubbled_gate_version"

var upgradeTable = dbutil.BuildUpgradeTable().
	WithRaw(0, 1, 0, "create gate tables", dbutil.TxnModeOn, func(ctx context.Context, db *dbutil.Database) error {
		for _, q := range []string{
			`CREATE TABLE bubbled_gate_sender (
				owner      TEXT   NOT NULL,
				sender     TEXT   NOT NULL,
				state      TEXT   NOT NULL,
				changed_at BIGINT NOT NULL,
				PRIMARY KEY (owner, sender)
			)`,
			`CREATE TABLE bubbled_gate_held (
				line    TEXT    NOT NULL,
				msg_id  TEXT    NOT NULL,
				sender  TEXT    NOT NULL,
				body    TEXT    NOT NULL,
				parts   INTEGER NOT NULL,
				at      BIGINT  NOT NULL,
				PRIMARY KEY (line, msg_id)
			)`,
			`CREATE INDEX bubbled_gate_held_sender_idx ON bubbled_gate_held (line, sender, at)`,
		} {
			if _, err := db.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}).
	Finish()

// Upgrade creates or updates the gate's tables (bubbled_gate_sender,
// bubbled_gate_held) in db. Safe to call on every start.
func Upgrade(ctx context.Context, db *dbutil.Database) error {
	if err := db.Child(versionTable, upgradeTable, nil).Upgrade(ctx); err != nil {
		return fmt.Errorf("upgrade gate tables: %w", err)
	}
	return nil
}

// Store keeps the owners' decisions and the quarantined messages in a
// dbutil database (SQLite or Postgres); run Upgrade first. Safe for
// concurrent use.
type Store struct{ db *dbutil.Database }

// NewStore returns a store on db; it does no I/O.
func NewStore(db *dbutil.Database) *Store { return &Store{db: db} }

// State returns what owner decided about sender ("" when nothing).
func (s *Store) State(ctx context.Context, owner, sender string) (State, error) {
	var st string
	err := s.db.QueryRow(ctx, `SELECT state FROM bubbled_gate_sender WHERE owner = $1 AND sender = $2`, owner, sender).Scan(&st)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the sender's state: %w", err)
	}
	return State(st), nil
}

// SetState records owner's decision about sender; "" forgets it.
func (s *Store) SetState(ctx context.Context, owner, sender string, st State) error {
	var err error
	if st == "" {
		_, err = s.db.Exec(ctx, `DELETE FROM bubbled_gate_sender WHERE owner = $1 AND sender = $2`, owner, sender)
	} else {
		_, err = s.db.Exec(ctx, `INSERT INTO bubbled_gate_sender (owner, sender, state, changed_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (owner, sender) DO UPDATE SET state = excluded.state, changed_at = excluded.changed_at`,
			owner, sender, string(st), time.Now().UnixMilli())
	}
	if err != nil {
		return fmt.Errorf("store the sender's state: %w", err)
	}
	return nil
}

// Hold stores a quarantined message; holding the same (line, ID) again
// changes nothing.
func (s *Store) Hold(ctx context.Context, h Held) error {
	_, err := s.db.Exec(ctx, `INSERT INTO bubbled_gate_held (line, msg_id, sender, body, parts, at) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (line, msg_id) DO NOTHING`, h.Line, h.ID, h.Sender, h.Body, h.Parts, h.At.UnixMilli())
	if err != nil {
		return fmt.Errorf("store the quarantined message: %w", err)
	}
	return nil
}

// Held lists a line's quarantined messages from sender, oldest first.
func (s *Store) Held(ctx context.Context, line, sender string) ([]Held, error) {
	rows, err := s.db.Query(ctx, `SELECT line, msg_id, sender, body, parts, at FROM bubbled_gate_held
		WHERE line = $1 AND sender = $2 ORDER BY at, msg_id`, line, sender)
	if err != nil {
		return nil, fmt.Errorf("list quarantined messages: %w", err)
	}
	defer rows.Close()
	var out []Held
	for rows.Next() {
		var h Held
		var at int64
		if err := rows.Scan(&h.Line, &h.ID, &h.Sender, &h.Body, &h.Parts, &at); err != nil {
			return nil, fmt.Errorf("list quarantined messages: %w", err)
		}
		h.At = time.UnixMilli(at)
		out = append(out, h)
	}
	return out, rows.Err()
}

// Release forgets a line's quarantined messages from sender.
func (s *Store) Release(ctx context.Context, line, sender string) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM bubbled_gate_held WHERE line = $1 AND sender = $2`, line, sender); err != nil {
		return fmt.Errorf("release quarantined messages: %w", err)
	}
	return nil
}
