package mms

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"go.mau.fi/util/dbutil"
)

// Item states of the fetch queue.
const (
	stateFetch   = "fetch"   // notified; GET pending
	stateDeliver = "deliver" // fetched (pdu stored); bridge pending
	stateExpired = "expired" // unfetchable; notice pending
	stateRespond = "respond" // handed; m-notifyresp-ind pending
	stateDone    = "done"
)

var upgradeTable = dbutil.BuildUpgradeTable().
	WithRaw(0, 1, 0, "create MMS fetch queue", dbutil.TxnModeOn, func(ctx context.Context, db *dbutil.Database) error {
		_, err := db.Exec(ctx, `CREATE TABLE bubbled_mms_inbox (
			id           TEXT    PRIMARY KEY,
			line_id      TEXT    NOT NULL,
			location     TEXT    NOT NULL,
			tid          TEXT    NOT NULL,
			sender       TEXT    NOT NULL,
			notification TEXT    NOT NULL,
			message      TEXT    NOT NULL DEFAULT '',
			state        TEXT    NOT NULL,
			attempts     INTEGER NOT NULL DEFAULT 0,
			next_at      BIGINT  NOT NULL,
			received_at  BIGINT  NOT NULL,
			expires_at   BIGINT  NOT NULL
		)`)
		return err
	}).
	WithRaw(1, 2, 1, "create MMS send queue", dbutil.TxnModeOn, func(ctx context.Context, db *dbutil.Database) error {
		_, err := db.Exec(ctx, `CREATE TABLE bubbled_mms_outbox (
			line_id    TEXT    NOT NULL,
			send_key        TEXT    NOT NULL,
			pdu        TEXT    NOT NULL,
			state      TEXT    NOT NULL,
			message_id TEXT    NOT NULL DEFAULT '',
			status     INTEGER NOT NULL DEFAULT 0,
			err_text   TEXT    NOT NULL DEFAULT '',
			attempts   INTEGER NOT NULL DEFAULT 0,
			next_at    BIGINT  NOT NULL,
			deadline   BIGINT  NOT NULL,
			PRIMARY KEY (line_id, send_key)
		)`)
		return err
	}).
	Finish()

// Upgrade creates or updates the MMS tables (bubbled_mms_*, version in
// bubbled_mms_version). Safe on every start; run before any Inbox.
func Upgrade(ctx context.Context, db *dbutil.Database) error {
	if err := db.Child("bubbled_mms_version", upgradeTable, nil).Upgrade(ctx); err != nil {
		return fmt.Errorf("upgrade MMS tables: %w", err)
	}
	return nil
}

// item is one row of the queue, owned by the worker while it runs.
type item struct {
	id, location, tid, from, state string
	attempts                       int
	nextAt, receivedAt, expiresAt  time.Time
	message                        *PDU
}

// insert stores a notification; the ID is derived from the line and the
// content location, so a notification seen twice is one row.
func (in *Inbox) insert(ctx context.Context, n *PDU, raw []byte) (string, bool, error) {
	h := sha256.Sum256([]byte(in.cfg.LineID + "\x00" + n.ContentLocation))
	id := "mms:" + in.cfg.LineID + ":" + hex.EncodeToString(h[:8])
	now := in.cfg.Clock.Now()
	exp := n.Expiry.Deadline(now)
	if exp.IsZero() {
		exp = now.Add(in.cfg.DefaultExpiry)
	}
	r, err := in.db.Exec(ctx, `INSERT INTO bubbled_mms_inbox (id, line_id, location, tid, sender, notification, state, next_at, received_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING`,
		id, in.cfg.LineID, n.ContentLocation, n.TransactionID, n.From, hex.EncodeToString(raw), stateFetch,
		now.UnixMilli(), now.UnixMilli(), exp.UnixMilli())
	if err != nil {
		return "", false, fmt.Errorf("store MMS notification: %w", err)
	}
	k, err := r.RowsAffected()
	return id, k == 1, err
}

// pending lists the unfinished items, oldest first.
func (in *Inbox) pending(ctx context.Context) ([]*item, error) {
	rows, err := in.db.Query(ctx, `SELECT id, location, tid, sender, message, state, attempts, next_at, received_at, expires_at
		FROM bubbled_mms_inbox WHERE line_id=$1 AND state<>$2 ORDER BY received_at, id`, in.cfg.LineID, stateDone)
	if err != nil {
		return nil, fmt.Errorf("list MMS queue: %w", err)
	}
	defer rows.Close()
	var out []*item
	for rows.Next() {
		var it item
		var msg string
		var next, recv, exp int64
		if err := rows.Scan(&it.id, &it.location, &it.tid, &it.from, &msg, &it.state, &it.attempts, &next, &recv, &exp); err != nil {
			return nil, err
		}
		it.nextAt, it.receivedAt, it.expiresAt = time.UnixMilli(next), time.UnixMilli(recv), time.UnixMilli(exp)
		if msg != "" {
			b, err := hex.DecodeString(msg)
			if err == nil {
				it.message, err = Decode(b)
			}
			if err != nil {
				return nil, fmt.Errorf("stored MMS %s: %w", it.id, err)
			}
		}
		out = append(out, &it)
	}
	return out, rows.Err()
}

// saveFetched stores the retrieved PDU as served with the step, so that a
// restart before the bridge took it does not fetch again.
func (in *Inbox) saveFetched(ctx context.Context, it *item, raw []byte) error {
	_, err := in.db.Exec(ctx, `UPDATE bubbled_mms_inbox SET message=$2, state=$3, attempts=0, next_at=$4 WHERE id=$1`,
		it.id, hex.EncodeToString(raw), stateDeliver, in.cfg.Clock.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("store fetched MMS: %w", err)
	}
	it.state, it.attempts = stateDeliver, 0
	return nil
}

func (in *Inbox) setState(ctx context.Context, it *item, state string, next time.Time) error {
	attempts := it.attempts
	if state != it.state {
		attempts = 0
	}
	_, err := in.db.Exec(ctx, `UPDATE bubbled_mms_inbox SET state=$2, attempts=$3, next_at=$4 WHERE id=$1`,
		it.id, state, attempts, next.UnixMilli())
	if err != nil {
		return fmt.Errorf("store MMS step %s: %w", state, err)
	}
	it.state, it.attempts, it.nextAt = state, attempts, next
	return nil
}
