package api

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.mau.fi/util/dbutil"
)

const versionTable = "bubbled_api_version"

var upgradeTable = dbutil.BuildUpgradeTable().
	WithRaw(0, 1, 0, "create API message table", dbutil.TxnModeOn, upgradeV1).
	WithRaw(1, 2, 0, "create outgoing webhook table", dbutil.TxnModeOn, upgradeV2).
	WithRaw(2, 3, 0, "number API messages in the order they were taken", dbutil.TxnModeOn, upgradeV3).
	Finish()

// Times are Unix milliseconds. routed says the router has the message (its
// route's own queue is durable from then on); mirrored says it is in the
// contact's Matrix room. Both steps are retried until they are done.
var schemaV1 = []string{
	`CREATE TABLE bubbled_api_message (
		id            TEXT    PRIMARY KEY,
		token         TEXT    NOT NULL,
		idem_key      TEXT    NOT NULL,
		recipient     TEXT    NOT NULL,
		text          TEXT    NOT NULL,
		route         TEXT    NOT NULL,
		line          TEXT    NOT NULL,
		status        TEXT    NOT NULL,
		reason        TEXT    NOT NULL,
		took_route    TEXT    NOT NULL,
		routed        BOOLEAN NOT NULL,
		mirrored      BOOLEAN NOT NULL,
		attempts      INTEGER NOT NULL,
		next_attempt  BIGINT  NOT NULL,
		mirror_next   BIGINT  NOT NULL,
		created_at    BIGINT  NOT NULL,
		updated_at    BIGINT  NOT NULL
	)`,
	`CREATE UNIQUE INDEX bubbled_api_message_idem_idx ON bubbled_api_message (token, idem_key) WHERE idem_key <> ''`,
	`CREATE INDEX bubbled_api_message_token_idx ON bubbled_api_message (token, created_at)`,
	`CREATE INDEX bubbled_api_message_route_idx ON bubbled_api_message (routed, next_attempt)`,
	`CREATE INDEX bubbled_api_message_mirror_idx ON bubbled_api_message (mirrored, created_at)`,
}

func upgradeV1(ctx context.Context, db *dbutil.Database) error {
	for _, q := range schemaV1 {
		if _, err := db.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// upgradeV3 adds seq, the order messages were taken in: two taken in one
// millisecond (an Alertmanager firing and its resolution, a script's
// burst) are routed and mirrored in that order, not by their random IDs.
// Older rows keep 0 and sort by time as before.
func upgradeV3(ctx context.Context, db *dbutil.Database) error {
	_, err := db.Exec(ctx, `ALTER TABLE bubbled_api_message ADD COLUMN seq BIGINT NOT NULL DEFAULT 0`)
	return err
}

// Upgrade creates or updates the API's table (bubbled_api_message) in db,
// tracking its schema version in bubbled_api_version. Safe to call on every
// start; it must run before a Store is used.
func Upgrade(ctx context.Context, db *dbutil.Database) error {
	if err := db.Child(versionTable, upgradeTable, nil).Upgrade(ctx); err != nil {
		return fmt.Errorf("upgrade API tables: %w", err)
	}
	return nil
}

// Status is where an API message is.
type Status string

// Statuses of an API message, in the order they usually come.
const (
	// StatusQueued: stored; the router or the line's outbox has not sent it yet.
	StatusQueued Status = "queued"
	// StatusSent: the route took it (the modem accepted every SMS part,
	// or the Matrix or RCS route sent it).
	StatusSent Status = "sent"
	// StatusDelivered: the network's status reports confirmed every part.
	StatusDelivered Status = "delivered"
	// StatusFailed: it was not, or may not have been, sent; Reason says why.
	StatusFailed Status = "failed"
)

// rank orders statuses so that a late or repeated event never moves a
// message back; failed and delivered are final.
func (s Status) rank() int {
	switch s {
	case StatusSent:
		return 1
	case StatusDelivered, StatusFailed:
		return 2
	}
	return 0
}

// Message is one message taken by the API, as stored.
type Message struct {
	// ID is the API's ID ("m_" and 26 base32 characters).
	ID string `json:"id"`
	// Token is the name of the token that sent it.
	Token string `json:"-"`
	// IdempotencyKey is the client's key, "" when none was given.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// To is the recipient in E.164.
	To string `json:"to"`
	// Text is the message.
	Text string `json:"-"`
	// Route is what the client asked for: auto, sms, rcs or matrix.
	Route string `json:"route"`
	// Line is the sending line's own number in E.164.
	Line string `json:"line"`
	// Status is queued, sent, delivered or failed.
	Status Status `json:"status"`
	// Reason says why it failed (or why it still waits), "" otherwise.
	Reason string `json:"reason,omitempty"`
	// TookRoute is the route the router chose, "" until it chose one.
	TookRoute string `json:"took_route,omitempty"`
	// Created and Updated are when it was taken and last changed.
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`

	routed, mirrored bool
	attempts         int
	// dupKeys are further idempotency keys of the same token that make
	// this message a duplicate (an Alertmanager notification's previous
	// window).
	dupKeys []string
}

// RouterID is the message's ID in the router and the line's outbox
// ("api:<id>"); it is what outcomes of the message carry.
func (m *Message) RouterID() string { return RouterIDPrefix + m.ID }

// RouterIDPrefix starts the router and outbox IDs of API messages.
const RouterIDPrefix = "api:"

// Store persists API messages in the bridge's database. Safe for
// concurrent use.
type Store struct {
	db *dbutil.Database
	// putMu serialises put in the process: concurrent SQLite write
	// transactions make all but one wait in SQLite's busy handler, which
	// sleeps in steps of milliseconds; a mutex hands over in microseconds.
	putMu sync.Mutex
	// lastSeq is the newest seq put gave (read from the table once).
	// Guarded by putMu.
	lastSeq  int64
	knowLast bool
}

// NewStore returns a Store on db (run Upgrade first); it does no I/O.
func NewStore(db *dbutil.Database) *Store { return &Store{db: db} }

// errCapReached is returned by put when the token's daily cap is used up.
var errCapReached = errors.New("the token's daily cap is reached")

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "m_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

const msgColumns = `id, token, idem_key, recipient, text, route, line, status, reason, took_route, routed, mirrored, attempts, created_at, updated_at`

func scanMessage(row dbutil.Scannable) (*Message, error) {
	var m Message
	var created, updated int64
	err := row.Scan(&m.ID, &m.Token, &m.IdempotencyKey, &m.To, &m.Text, &m.Route, &m.Line, &m.Status, &m.Reason,
		&m.TookRoute, &m.routed, &m.mirrored, &m.attempts, &created, &updated)
	if err != nil {
		return nil, err
	}
	m.Created, m.Updated = time.UnixMilli(created), time.UnixMilli(updated)
	return &m, nil
}

// put stores m (ID and times set here) unless the token already has a
// message with the same idempotency key, which it returns with dup true.
// A new message is refused with errCapReached when the token has taken cap
// messages since dayStart (cap 0: no cap). The check and the insert are one
// transaction, so concurrent requests cannot overrun the cap.
func (s *Store) put(ctx context.Context, m *Message, now, dayStart time.Time, cap int) (stored *Message, dup bool, err error) {
	s.putMu.Lock()
	defer s.putMu.Unlock()
	err = s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		for _, key := range append([]string{m.IdempotencyKey}, m.dupKeys...) {
			if key == "" {
				continue
			}
			old, err := scanMessage(s.db.QueryRow(ctx, `SELECT `+msgColumns+` FROM bubbled_api_message WHERE token=$1 AND idem_key=$2`,
				m.Token, key))
			if err == nil {
				stored, dup = old, true
				return nil
			} else if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		if cap > 0 {
			var n int
			if err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_api_message WHERE token=$1 AND created_at >= $2`,
				m.Token, dayStart.UnixMilli()).Scan(&n); err != nil {
				return err
			}
			if n >= cap {
				return errCapReached
			}
		}
		if !s.knowLast {
			if err := s.db.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM bubbled_api_message`).Scan(&s.lastSeq); err != nil {
				return err
			}
			s.knowLast = true
		}
		c := *m
		c.ID, c.Status, c.Created, c.Updated = newID(), StatusQueued, now, now
		_, err := s.db.Exec(ctx, `INSERT INTO bubbled_api_message (`+msgColumns+`, next_attempt, mirror_next, seq)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '', '', false, false, 0, $9, $9, $9, $9, $10)`,
			c.ID, c.Token, c.IdempotencyKey, c.To, c.Text, c.Route, c.Line, c.Status, now.UnixMilli(), s.lastSeq+1)
		if err == nil {
			s.lastSeq++
		}
		stored = &c
		return err
	})
	if err != nil && !errors.Is(err, errCapReached) {
		err = fmt.Errorf("store API message: %w", err)
	}
	return stored, dup, err
}

// Get returns the message with id, or nil when there is none.
func (s *Store) Get(ctx context.Context, id string) (*Message, error) {
	m, err := scanMessage(s.db.QueryRow(ctx, `SELECT `+msgColumns+` FROM bubbled_api_message WHERE id=$1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read API message %s: %w", id, err)
	}
	return m, nil
}

// dueForRouting returns up to limit messages the router does not have yet
// whose next attempt is due, oldest first.
func (s *Store) dueForRouting(ctx context.Context, now time.Time, limit int) ([]*Message, error) {
	return s.list(ctx, `SELECT `+msgColumns+` FROM bubbled_api_message WHERE routed=false AND next_attempt <= $1 ORDER BY created_at, seq, id LIMIT $2`,
		now.UnixMilli(), limit)
}

// nextRouting returns when the earliest message waiting for the router is
// due, or zero when none waits.
func (s *Store) nextRouting(ctx context.Context) (time.Time, error) {
	var next sql.NullInt64
	err := s.db.QueryRow(ctx, `SELECT MIN(next_attempt) FROM bubbled_api_message WHERE routed=false`).Scan(&next)
	if err != nil || !next.Valid {
		return time.Time{}, err
	}
	return time.UnixMilli(next.Int64), nil
}

// dueForMirror returns up to limit messages not yet in their Matrix room
// whose next try is due, oldest first.
func (s *Store) dueForMirror(ctx context.Context, now time.Time, limit int) ([]*Message, error) {
	return s.list(ctx, `SELECT `+msgColumns+` FROM bubbled_api_message WHERE mirrored=false AND mirror_next <= $1 ORDER BY created_at, seq, id LIMIT $2`,
		now.UnixMilli(), limit)
}

func (s *Store) list(ctx context.Context, query string, args ...any) ([]*Message, error) {
	rows, err := s.db.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list API messages: %w", err)
	}
	defer rows.Close()
	var out []*Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("list API messages: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// routed records that the router took the message by route.
func (s *Store) markRouted(ctx context.Context, id, route string, now time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE bubbled_api_message SET routed=true, took_route=$2, reason='', updated_at=$3 WHERE id=$1`,
		id, route, now.UnixMilli())
	return err
}

// retryRouting records a failed attempt and when to try again.
func (s *Store) retryRouting(ctx context.Context, id string, attempts int, next time.Time, reason string, now time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE bubbled_api_message SET attempts=$2, next_attempt=$3, reason=$4, updated_at=$5 WHERE id=$1`,
		id, attempts, next.UnixMilli(), reason, now.UnixMilli())
	return err
}

// Awaiting returns up to limit messages that took route, were created at or
// after since and are neither delivered nor failed, newest first: those a
// route's delivery receipt may be about when the route names messages by
// its own IDs (RCS derives them from RouterID).
func (s *Store) Awaiting(ctx context.Context, route string, since time.Time, limit int) ([]*Message, error) {
	return s.list(ctx, `SELECT `+msgColumns+` FROM bubbled_api_message WHERE took_route=$1 AND status IN ($2, $3) AND created_at >= $4
		ORDER BY created_at DESC, id LIMIT $5`, route, StatusQueued, StatusSent, since.UnixMilli(), limit)
}

// FindAwaiting returns the newest message of the last week that Awaiting
// lists for route and whose router ID match accepts, or nil.
func (s *Store) FindAwaiting(ctx context.Context, route string, now time.Time, match func(routerID string) bool) (*Message, error) {
	msgs, err := s.Awaiting(ctx, route, now.Add(-7*24*time.Hour), 1000)
	for _, m := range msgs {
		if match(m.RouterID()) {
			return m, nil
		}
	}
	return nil, err
}

// markMirrored records that the message is in its Matrix room.
func (s *Store) markMirrored(ctx context.Context, id string) error {
	_, err := s.db.Exec(ctx, `UPDATE bubbled_api_message SET mirrored=true WHERE id=$1`, id)
	return err
}

// retryMirror records when to try the Matrix room again.
func (s *Store) retryMirror(ctx context.Context, id string, next time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE bubbled_api_message SET mirror_next=$2 WHERE id=$1`, id, next.UnixMilli())
	return err
}

// SetStatus moves the message to st with reason, unless it is already at
// a later (or final) status. A failed message is routed: nothing retries it.
// It reports whether the status changed; an unknown id changes nothing.
func (s *Store) SetStatus(ctx context.Context, id string, st Status, reason string, now time.Time) (bool, error) {
	res, err := s.db.Exec(ctx, `UPDATE bubbled_api_message SET status=$2, reason=$3, updated_at=$4,
			routed = CASE WHEN $2 = 'failed' THEN true ELSE routed END
		WHERE id=$1 AND (CASE status WHEN 'queued' THEN 0 WHEN 'sent' THEN 1 ELSE 2 END) < $5`,
		id, string(st), reason, now.UnixMilli(), st.rank())
	if err != nil {
		return false, fmt.Errorf("update API message %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}
