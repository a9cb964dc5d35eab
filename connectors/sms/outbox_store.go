package sms

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.mau.fi/util/dbutil"

	"github.com/bubbled/bubbled/connectors/sms/pdu"
)

// schemaV2 adds the durable outbound queue, the outcome events handed to
// the OutcomeHandler, and missed calls. Valid for SQLite and Postgres.
var schemaV2 = []string{
	`CREATE TABLE bubbled_sms_seq (
		line_id TEXT   NOT NULL,
		name    TEXT   NOT NULL,
		value   BIGINT NOT NULL,
		PRIMARY KEY (line_id, name)
	)`,
	`CREATE TABLE bubbled_sms_outbox (
		line_id      TEXT    NOT NULL,
		id           TEXT    NOT NULL,
		seq          BIGINT  NOT NULL,
		recipient    TEXT    NOT NULL,
		text         TEXT    NOT NULL,
		parts        INTEGER NOT NULL,
		state        TEXT    NOT NULL,
		reason       TEXT    NOT NULL,
		code         INTEGER NOT NULL,
		attempts     INTEGER NOT NULL,
		next_attempt BIGINT  NOT NULL,
		held         BOOLEAN NOT NULL,
		enqueued_at  BIGINT  NOT NULL,
		updated_at   BIGINT  NOT NULL,
		PRIMARY KEY (line_id, id)
	)`,
	`CREATE INDEX bubbled_sms_outbox_state_idx ON bubbled_sms_outbox (line_id, state, seq)`,
	`CREATE TABLE bubbled_sms_outbox_part (
		line_id     TEXT    NOT NULL,
		msg_id      TEXT    NOT NULL,
		seq         INTEGER NOT NULL,
		pdu         TEXT    NOT NULL,
		tpdu_len    INTEGER NOT NULL,
		state       TEXT    NOT NULL,
		mr          INTEGER NOT NULL,
		sent_at     BIGINT  NOT NULL,
		status      INTEGER NOT NULL,
		reported_at BIGINT  NOT NULL,
		PRIMARY KEY (line_id, msg_id, seq)
	)`,
	`CREATE INDEX bubbled_sms_outbox_part_mr_idx ON bubbled_sms_outbox_part (line_id, mr, state)`,
	`CREATE INDEX bubbled_sms_outbox_part_sent_idx ON bubbled_sms_outbox_part (line_id, sent_at)`,
	`CREATE TABLE bubbled_sms_outcome (
		line_id    TEXT    NOT NULL,
		seq        BIGINT  NOT NULL,
		msg_id     TEXT    NOT NULL,
		kind       TEXT    NOT NULL,
		recipient  TEXT    NOT NULL,
		parts      INTEGER NOT NULL,
		mrs        TEXT    NOT NULL,
		reason     TEXT    NOT NULL,
		code       INTEGER NOT NULL,
		retry_at   BIGINT  NOT NULL,
		created_at BIGINT  NOT NULL,
		handed     BOOLEAN NOT NULL,
		PRIMARY KEY (line_id, seq)
	)`,
	`CREATE INDEX bubbled_sms_outcome_handed_idx ON bubbled_sms_outcome (line_id, handed, seq)`,
	`CREATE TABLE bubbled_sms_call (
		line_id   TEXT    NOT NULL,
		seq       BIGINT  NOT NULL,
		caller    TEXT    NOT NULL,
		called_at BIGINT  NOT NULL,
		handed    BOOLEAN NOT NULL,
		PRIMARY KEY (line_id, seq)
	)`,
}

func upgradeV2(ctx context.Context, db *dbutil.Database) error {
	for _, q := range schemaV2 {
		if _, err := db.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// Outbox message and part states as stored.
const (
	msgQueued    = "queued"
	msgSent      = "sent"
	msgDelivered = "delivered"
	msgFailed    = "failed"
	msgUnknown   = "unknown"

	partPending   = "pending"
	partSent      = "sent"
	partDelivered = "delivered"
	partFailed    = "failed"
	partUnknown   = "unknown"
)

// seqBlockSize is how many values of a counter one database write reserves.
const seqBlockSize = 256

// seqBlock is the unused rest of a counter's reserved block (next..last;
// empty when next > last) and the highest value the store has handed out.
type seqBlock struct{ next, last, top int64 }

// left says how many values the block still holds.
func (b *seqBlock) left() int64 { return b.last - b.next + 1 }

// reserve makes sure n values of the line's counter name are held in
// memory, reserving a new block in the database (one statement, committed
// on its own) when fewer are left. Call it before the transaction that
// takes the values (nextSeq): ctx must not carry a transaction, or a
// rollback would give a block back that this store still hands out. The
// database value only moves forward, so values given up by a crash or a
// rolled-back caller leave gaps, never repeats, even with two stores of
// one line. seqMu is never held across the database call: a transaction
// taking values (nextSeq, under seqMu) may hold the only connection or
// SQLite's write lock that the call waits for.
func (s *store) reserve(ctx context.Context, name string, n int) error {
	s.seqMu.Lock()
	enough := s.seqs[name] != nil && s.seqs[name].left() >= int64(n)
	s.seqMu.Unlock()
	if enough {
		return nil
	}
	size := int64(max(seqBlockSize, n))
	end, err := s.advance(ctx, name, size)
	if err != nil {
		return err
	}
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	b := s.blockLocked(name)
	if b.left() >= int64(n) {
		return nil // another reserve came first; this block is a gap
	}
	// Values handed out only grow: what the store gave meanwhile (from
	// the database, in nextSeq) may lie above this block's start.
	b.next, b.last = max(end-size+1, b.top+1), end
	return nil
}

// nextSeq returns the line's next value of counter name (1, 2, ...): from
// the block reserve holds, or, when none is left, straight from the
// database inside the caller's transaction (a row lock serialises
// concurrent writers on Postgres). Values only grow, with gaps.
func (s *store) nextSeq(ctx context.Context, name string) (int64, error) {
	s.seqMu.Lock()
	if b := s.seqs[name]; b != nil && b.left() > 0 {
		v := b.next
		b.next++
		b.top = v
		s.seqMu.Unlock()
		return v, nil
	}
	s.seqMu.Unlock()
	v, err := s.advance(ctx, name, 1)
	if err != nil {
		return 0, err
	}
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	b := s.blockLocked(name)
	b.top = max(b.top, v)
	b.next = max(b.next, v+1)
	return v, nil
}

// advance moves the line's counter name forward by n in the database and
// returns its new value (the last of the n).
func (s *store) advance(ctx context.Context, name string, n int64) (int64, error) {
	var v int64
	err := s.db.QueryRow(ctx, `INSERT INTO bubbled_sms_seq (line_id, name, value) VALUES ($1, $2, $3)
		ON CONFLICT (line_id, name) DO UPDATE SET value=bubbled_sms_seq.value+$3 RETURNING value`, s.line, name, n).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("advance %s counter: %w", name, err)
	}
	return v, nil
}

// blockLocked returns counter name's block, empty when new. Caller holds
// seqMu.
func (s *store) blockLocked(name string) *seqBlock {
	if s.seqs == nil {
		s.seqs = map[string]*seqBlock{}
	}
	b := s.seqs[name]
	if b == nil {
		b = &seqBlock{next: 1} // empty: next > last
		s.seqs[name] = b
	}
	return b
}

// outMsg is a queued outbound message as the sender sees it.
type outMsg struct {
	id          string
	seq         int64
	to          string
	parts       int
	attempts    int
	nextAttempt time.Time
	held        bool
	// fresh holds the parts as enqueue stored them, so that the first
	// attempt needs no read; nil after it (later attempts read the table).
	fresh []outPart
}

// outPart is one stored PDU of an outbound message.
type outPart struct {
	seq     int
	pdu     string
	tpduLen int
	state   string
	mr      int
}

// hasOut reports whether a message with this ID was ever enqueued.
func (s *store) hasOut(ctx context.Context, id string) (bool, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_sms_outbox WHERE line_id=$1 AND id=$2`, s.line, id).Scan(&n)
	return n > 0, err
}

// enqueue stores a message with its encoded parts, in one transaction. It
// returns nil when the ID was already queued.
func (s *store) enqueue(ctx context.Context, m OutMessage, parts []pdu.Part) (*outMsg, error) {
	var out *outMsg
	if err := s.reserve(ctx, "outbox", 1); err != nil {
		return nil, err
	}
	err := s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		out = nil
		seq, err := s.nextSeq(ctx, "outbox")
		if err != nil {
			return err
		}
		now := s.now().UnixMilli()
		res, err := s.db.Exec(ctx, `INSERT INTO bubbled_sms_outbox (line_id, id, seq, recipient, text, parts, state, reason, code,
			attempts, next_attempt, held, enqueued_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, '', -1, 0, 0, $8, $9, $9)
			ON CONFLICT (line_id, id) DO NOTHING`,
			s.line, m.ID, seq, m.To, m.Text, len(parts), msgQueued, false, now)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // queued before: nothing to do
		}
		fresh := make([]outPart, len(parts))
		for i, p := range parts {
			_, err = s.db.Exec(ctx, `INSERT INTO bubbled_sms_outbox_part (line_id, msg_id, seq, pdu, tpdu_len, state, mr, sent_at, status, reported_at)
				VALUES ($1, $2, $3, $4, $5, $6, -1, 0, -1, 0)`, s.line, m.ID, i+1, p.Hex, p.TPDULen, partPending)
			if err != nil {
				return err
			}
			fresh[i] = outPart{seq: i + 1, pdu: p.Hex, tpduLen: p.TPDULen, state: partPending, mr: -1}
		}
		out = &outMsg{id: m.ID, seq: seq, to: m.To, parts: len(parts), fresh: fresh}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store outbound SMS %s: %w", m.ID, err)
	}
	return out, nil
}

// addOutcome appends an outcome event; call inside a transaction.
func (s *store) addOutcome(ctx context.Context, o Outcome) error {
	seq, err := s.nextSeq(ctx, "outcome")
	if err != nil {
		return err
	}
	mrs := make([]string, len(o.MRs))
	for i, mr := range o.MRs {
		mrs[i] = strconv.Itoa(mr)
	}
	_, err = s.db.Exec(ctx, `INSERT INTO bubbled_sms_outcome (line_id, seq, msg_id, kind, recipient, parts, mrs, reason, code, retry_at, created_at, handed)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		s.line, seq, o.MessageID, string(o.Kind), o.To, o.Parts, strings.Join(mrs, ","), o.Reason, o.Code, millis(o.RetryAt), s.now().UnixMilli(), false)
	if err != nil {
		return fmt.Errorf("store SMS outcome: %w", err)
	}
	return nil
}

// activeOut lists queued messages in enqueue order.
func (s *store) activeOut(ctx context.Context) ([]*outMsg, error) {
	rows, err := s.db.Query(ctx, `SELECT id, seq, recipient, parts, attempts, next_attempt, held FROM bubbled_sms_outbox
		WHERE line_id=$1 AND state=$2 ORDER BY seq`, s.line, msgQueued)
	if err != nil {
		return nil, fmt.Errorf("list queued SMS: %w", err)
	}
	defer rows.Close()
	var out []*outMsg
	for rows.Next() {
		var m outMsg
		var next int64
		if err := rows.Scan(&m.id, &m.seq, &m.to, &m.parts, &m.attempts, &next, &m.held); err != nil {
			return nil, err
		}
		if next > 0 {
			m.nextAttempt = time.UnixMilli(next)
		}
		out = append(out, &m)
	}
	return out, rows.Err()
}

// queueLength counts queued messages.
func (s *store) queueLength(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_sms_outbox WHERE line_id=$1 AND state=$2`, s.line, msgQueued).Scan(&n)
	return n, err
}

// oldestQueued returns when the oldest queued message was enqueued; the zero
// time when none is queued.
func (s *store) oldestQueued(ctx context.Context) (time.Time, error) {
	var ms sql.NullInt64
	err := s.db.QueryRow(ctx, `SELECT MIN(enqueued_at) FROM bubbled_sms_outbox WHERE line_id=$1 AND state=$2`, s.line, msgQueued).Scan(&ms)
	if err != nil || !ms.Valid {
		return time.Time{}, err
	}
	return time.UnixMilli(ms.Int64), nil
}

// outParts loads the parts of message id in order.
func (s *store) outParts(ctx context.Context, id string) ([]outPart, error) {
	rows, err := s.db.Query(ctx, `SELECT seq, pdu, tpdu_len, state, mr FROM bubbled_sms_outbox_part
		WHERE line_id=$1 AND msg_id=$2 ORDER BY seq`, s.line, id)
	if err != nil {
		return nil, fmt.Errorf("load SMS parts of %s: %w", id, err)
	}
	defer rows.Close()
	var out []outPart
	for rows.Next() {
		var p outPart
		if err := rows.Scan(&p.seq, &p.pdu, &p.tpduLen, &p.state, &p.mr); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// mrsOf returns the MRs of a message's parts (-1 where none).
func (s *store) mrsOf(ctx context.Context, id string) ([]int, error) {
	parts, err := s.outParts(ctx, id)
	if err != nil {
		return nil, err
	}
	mrs := make([]int, len(parts))
	for i, p := range parts {
		mrs[i] = p.mr
	}
	return mrs, nil
}

// partStateSum sums up a message's parts.
type partStateSum struct {
	mrs                     []int // per part in order, -1 where none
	left, failed, delivered int   // parts pending, failed, delivered
	failedStatus            int   // the highest TP-ST of the failed parts
}

// partStates reads a message's parts once and sums them up.
func (s *store) partStates(ctx context.Context, id string) (partStateSum, error) {
	var sum partStateSum
	rows, err := s.db.Query(ctx, `SELECT state, mr, status FROM bubbled_sms_outbox_part WHERE line_id=$1 AND msg_id=$2 ORDER BY seq`, s.line, id)
	if err != nil {
		return sum, err
	}
	defer rows.Close()
	for rows.Next() {
		var state string
		var mr, status int
		if err := rows.Scan(&state, &mr, &status); err != nil {
			return sum, err
		}
		sum.mrs = append(sum.mrs, mr)
		switch state {
		case partPending:
			sum.left++
		case partFailed:
			if sum.failed == 0 || status > sum.failedStatus {
				sum.failedStatus = status
			}
			sum.failed++
		case partDelivered:
			sum.delivered++
		}
	}
	return sum, rows.Err()
}

// partSent records the MR of a part the modem accepted. When it was the
// last part, the message becomes sent and a Sent outcome is added, in the
// same transaction. It reports whether the message is now sent.
func (s *store) partSent(ctx context.Context, m *outMsg, seq, mr int) (bool, error) {
	done := false
	if err := s.reserve(ctx, "outcome", 2); err != nil {
		return false, err
	}
	err := s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		now := s.now().UnixMilli()
		if _, err := s.db.Exec(ctx, `UPDATE bubbled_sms_outbox_part SET state=$4, mr=$5, sent_at=$6
			WHERE line_id=$1 AND msg_id=$2 AND seq=$3`, s.line, m.id, seq, partSent, mr, now); err != nil {
			return err
		}
		// One read of the parts answers what used to take four queries:
		// parts left, the MRs, and the status reports of early parts that
		// came before the last part was sent. A single part needs none: no
		// report can come before its MR.
		st := partStateSum{mrs: []int{mr}}
		if m.parts > 1 {
			var err error
			if st, err = s.partStates(ctx, m.id); err != nil {
				return err
			}
		}
		if st.left > 0 {
			return nil
		}
		done = true
		if _, err := s.db.Exec(ctx, `UPDATE bubbled_sms_outbox SET state=$3, updated_at=$4 WHERE line_id=$1 AND id=$2`,
			s.line, m.id, msgSent, now); err != nil {
			return err
		}
		mrs, failed, delivered, status := st.mrs, st.failed, st.delivered, st.failedStatus
		if err := s.addOutcome(ctx, Outcome{MessageID: m.id, Kind: OutcomeSent, To: m.to, Parts: m.parts, MRs: mrs, Code: -1}); err != nil {
			return err
		}
		switch {
		case failed > 0:
			reason := statusReason(byte(status))
			if _, err := s.db.Exec(ctx, `UPDATE bubbled_sms_outbox SET state=$3, reason=$4, code=$5 WHERE line_id=$1 AND id=$2`,
				s.line, m.id, msgFailed, reason, status); err != nil {
				return err
			}
			return s.addOutcome(ctx, Outcome{MessageID: m.id, Kind: OutcomeFailed, To: m.to, Parts: m.parts, MRs: mrs, Reason: reason, Code: status})
		case delivered == m.parts:
			if _, err := s.db.Exec(ctx, `UPDATE bubbled_sms_outbox SET state=$3 WHERE line_id=$1 AND id=$2`, s.line, m.id, msgDelivered); err != nil {
				return err
			}
			return s.addOutcome(ctx, Outcome{MessageID: m.id, Kind: OutcomeDelivered, To: m.to, Parts: m.parts, MRs: mrs, Code: 0})
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("record sent SMS part %d of %s: %w", seq, m.id, err)
	}
	return done, nil
}

// retryLater records a temporary failure: the message stays queued until
// next.
func (s *store) retryLater(ctx context.Context, m *outMsg, attempts int, next time.Time, reason string, code int) error {
	_, err := s.db.Exec(ctx, `UPDATE bubbled_sms_outbox SET attempts=$3, next_attempt=$4, reason=$5, code=$6, updated_at=$7
		WHERE line_id=$1 AND id=$2`, s.line, m.id, attempts, next.UnixMilli(), reason, code, s.now().UnixMilli())
	if err != nil {
		return fmt.Errorf("record SMS retry of %s: %w", m.id, err)
	}
	return nil
}

// finish ends a message as failed or unknown: its unsent parts take the
// same state, and the outcome is added in the same transaction.
func (s *store) finish(ctx context.Context, m *outMsg, kind OutcomeKind, reason string, code int) error {
	state, pstate := msgFailed, partFailed
	if kind == OutcomeUnknown {
		state, pstate = msgUnknown, partUnknown
	}
	if err := s.reserve(ctx, "outcome", 1); err != nil {
		return err
	}
	err := s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		now := s.now().UnixMilli()
		if _, err := s.db.Exec(ctx, `UPDATE bubbled_sms_outbox SET state=$3, reason=$4, code=$5, updated_at=$6 WHERE line_id=$1 AND id=$2`,
			s.line, m.id, state, reason, code, now); err != nil {
			return err
		}
		if _, err := s.db.Exec(ctx, `UPDATE bubbled_sms_outbox_part SET state=$4 WHERE line_id=$1 AND msg_id=$2 AND state=$3`,
			s.line, m.id, partPending, pstate); err != nil {
			return err
		}
		mrs, err := s.mrsOf(ctx, m.id)
		if err != nil {
			return err
		}
		return s.addOutcome(ctx, Outcome{MessageID: m.id, Kind: kind, To: m.to, Parts: m.parts, MRs: mrs, Reason: reason, Code: code})
	})
	if err != nil {
		return fmt.Errorf("record %s SMS %s: %w", kind, m.id, err)
	}
	return nil
}

// hold marks messages as held back by a cap and adds one Held outcome
// each (only for messages not marked before).
func (s *store) hold(ctx context.Context, msgs []*outMsg, reason string, until time.Time) error {
	if err := s.reserve(ctx, "outcome", len(msgs)); err != nil {
		return err
	}
	return s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		for _, m := range msgs {
			r, err := s.db.Exec(ctx, `UPDATE bubbled_sms_outbox SET held=$3, updated_at=$4 WHERE line_id=$1 AND id=$2 AND held=$5`,
				s.line, m.id, true, s.now().UnixMilli(), false)
			if err != nil {
				return err
			}
			if n, _ := r.RowsAffected(); n == 0 {
				continue
			}
			if err := s.addOutcome(ctx, Outcome{MessageID: m.id, Kind: OutcomeHeld, To: m.to, Parts: m.parts, Reason: reason, Code: -1, RetryAt: until}); err != nil {
				return err
			}
		}
		return nil
	})
}

// sentSince counts parts the modem accepted at or after t.
func (s *store) sentSince(ctx context.Context, t time.Time) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_sms_outbox_part WHERE line_id=$1 AND sent_at >= $2`, s.line, t.UnixMilli()).Scan(&n)
	return n, err
}

// sentSinceOn counts parts the modems of lines accepted at or after t.
func (s *store) sentSinceOn(ctx context.Context, lines []string, t time.Time) (int, error) {
	total := 0
	for _, line := range slices.Compact(slices.Sorted(slices.Values(lines))) {
		var n int
		err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_sms_outbox_part WHERE line_id=$1 AND sent_at >= $2`, line, t.UnixMilli()).Scan(&n)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// oldestSentSince returns the time of the oldest part sent at or after t.
func (s *store) oldestSentSince(ctx context.Context, t time.Time) (time.Time, error) {
	var v sql.NullInt64
	err := s.db.QueryRow(ctx, `SELECT MIN(sent_at) FROM bubbled_sms_outbox_part WHERE line_id=$1 AND sent_at >= $2`, s.line, t.UnixMilli()).Scan(&v)
	if err != nil || !v.Valid {
		return time.Time{}, err
	}
	return time.UnixMilli(v.Int64), nil
}

// reportResult says what a status report did.
type reportResult struct {
	matched bool
	msgID   string
	outcome OutcomeKind // "" when the message's outcome did not change
}

// reportedPart is the sent part a status report is about.
type reportedPart struct {
	msgID, to, state string
	seq, parts       int
}

// reportedPart finds the most recent sent part with the report's MR and
// recipient that has no final status yet (MRs wrap at 256).
func (s *store) reportedPart(ctx context.Context, r *pdu.Message) (reportedPart, bool, error) {
	rows, err := s.db.Query(ctx, `SELECT p.msg_id, p.seq, o.recipient, o.state, o.parts FROM bubbled_sms_outbox_part p
		JOIN bubbled_sms_outbox o ON o.line_id=p.line_id AND o.id=p.msg_id
		WHERE p.line_id=$1 AND p.mr=$2 AND p.state=$3 ORDER BY p.sent_at DESC, o.seq DESC`, s.line, r.MR, partSent)
	if err != nil {
		return reportedPart{}, false, err
	}
	defer rows.Close()
	for rows.Next() {
		var p reportedPart
		if err := rows.Scan(&p.msgID, &p.seq, &p.to, &p.state, &p.parts); err != nil {
			return reportedPart{}, false, err
		}
		if sameNumber(p.to, r.Address) {
			return p, true, nil
		}
	}
	return reportedPart{}, false, rows.Err()
}

// statusReport applies an SMS-STATUS-REPORT to the most recent part sent
// with this MR to this recipient that has no final status yet (MRs wrap at
// 256). A final status of the part may complete the message: Delivered
// when all parts are, Failed on the first permanent failure.
func (s *store) statusReport(ctx context.Context, r *pdu.Message) (reportResult, error) {
	var res reportResult
	if err := s.reserve(ctx, "outcome", 1); err != nil {
		return res, err
	}
	err := s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		res = reportResult{}
		p, found, err := s.reportedPart(ctx, r)
		if err != nil || !found {
			return err
		}
		msgID, seq, to, state, parts := p.msgID, p.seq, p.to, p.state, p.parts
		res.matched, res.msgID = true, msgID
		class := reportClass(r.Status)
		now := s.now().UnixMilli()
		pstate := partSent
		switch class {
		case reportDelivered:
			pstate = partDelivered
		case reportFailed:
			pstate = partFailed
		}
		if _, err := s.db.Exec(ctx, `UPDATE bubbled_sms_outbox_part SET state=$4, status=$5, reported_at=$6
			WHERE line_id=$1 AND msg_id=$2 AND seq=$3`, s.line, msgID, seq, pstate, int(r.Status), now); err != nil {
			return err
		}
		if state != msgSent || class == reportPending {
			// A queued message's early parts: partSent folds them in.
			return nil
		}
		m := &outMsg{id: msgID, to: to, parts: parts}
		mrs, err := s.mrsOf(ctx, msgID)
		if err != nil {
			return err
		}
		if class == reportFailed {
			reason := statusReason(r.Status)
			if _, err := s.db.Exec(ctx, `UPDATE bubbled_sms_outbox SET state=$3, reason=$4, code=$5, updated_at=$6 WHERE line_id=$1 AND id=$2`,
				s.line, msgID, msgFailed, reason, int(r.Status), now); err != nil {
				return err
			}
			res.outcome = OutcomeFailed
			return s.addOutcome(ctx, Outcome{MessageID: msgID, Kind: OutcomeFailed, To: to, Parts: parts, MRs: mrs, Reason: reason, Code: int(r.Status)})
		}
		var left int
		if err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_sms_outbox_part WHERE line_id=$1 AND msg_id=$2 AND state<>$3`,
			s.line, msgID, partDelivered).Scan(&left); err != nil {
			return err
		}
		if left > 0 {
			return nil
		}
		if _, err := s.db.Exec(ctx, `UPDATE bubbled_sms_outbox SET state=$3, updated_at=$4 WHERE line_id=$1 AND id=$2`,
			s.line, msgID, msgDelivered, now); err != nil {
			return err
		}
		res.outcome = OutcomeDelivered
		return s.addOutcome(ctx, Outcome{MessageID: m.id, Kind: OutcomeDelivered, To: to, Parts: parts, MRs: mrs, Code: int(r.Status)})
	})
	if err != nil {
		return res, fmt.Errorf("apply status report for MR %d: %w", r.MR, err)
	}
	return res, nil
}

// sameNumber compares a stored recipient with a status report's TP-RA:
// equal digits, or one a suffix of the other of at least 6 digits
// (national and international forms). An empty TP-RA matches any.
func sameNumber(a, b string) bool {
	da, db := digitsOf(a), digitsOf(b)
	if db == "" || da == db {
		return true
	}
	if len(da) < 6 || len(db) < 6 {
		return strings.EqualFold(a, b)
	}
	return strings.HasSuffix(da, db) || strings.HasSuffix(db, da)
}

func digitsOf(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= '0' && c <= '9' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// pendingOutcomes returns outcome events not yet accepted by the handler,
// oldest first (at most limit).
func (s *store) pendingOutcomes(ctx context.Context, limit int) ([]Outcome, error) {
	rows, err := s.db.Query(ctx, `SELECT seq, msg_id, kind, recipient, parts, mrs, reason, code, retry_at, created_at FROM bubbled_sms_outcome
		WHERE line_id=$1 AND handed=$2 ORDER BY seq LIMIT $3`, s.line, false, limit)
	if err != nil {
		return nil, fmt.Errorf("list SMS outcomes: %w", err)
	}
	defer rows.Close()
	var out []Outcome
	for rows.Next() {
		var o Outcome
		var kind, mrs string
		var retry, created int64
		if err := rows.Scan(&o.Seq, &o.MessageID, &kind, &o.To, &o.Parts, &mrs, &o.Reason, &o.Code, &retry, &created); err != nil {
			return nil, err
		}
		o.LineID, o.Kind = s.line, OutcomeKind(kind)
		if mrs != "" {
			for _, v := range strings.Split(mrs, ",") {
				n, _ := strconv.Atoi(v)
				o.MRs = append(o.MRs, n)
			}
		}
		if retry > 0 {
			o.RetryAt = time.UnixMilli(retry)
		}
		o.At = time.UnixMilli(created)
		out = append(out, o)
	}
	return out, rows.Err()
}

func (s *store) markOutcomeHanded(ctx context.Context, seq int64) error {
	_, err := s.db.Exec(ctx, `UPDATE bubbled_sms_outcome SET handed=$3 WHERE line_id=$1 AND seq=$2`, s.line, seq, true)
	if err != nil {
		return fmt.Errorf("mark SMS outcome %d handed: %w", seq, err)
	}
	return nil
}

// saveCall persists an incoming call.
func (s *store) saveCall(ctx context.Context, from string, at time.Time) (int64, error) {
	var seq int64
	if err := s.reserve(ctx, "call", 1); err != nil {
		return 0, err
	}
	err := s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		var err error
		if seq, err = s.nextSeq(ctx, "call"); err != nil {
			return err
		}
		_, err = s.db.Exec(ctx, `INSERT INTO bubbled_sms_call (line_id, seq, caller, called_at, handed) VALUES ($1, $2, $3, $4, $5)`,
			s.line, seq, from, at.UnixMilli(), false)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store incoming call: %w", err)
	}
	return seq, nil
}

func (s *store) pendingCalls(ctx context.Context) ([]Call, error) {
	rows, err := s.db.Query(ctx, `SELECT seq, caller, called_at FROM bubbled_sms_call WHERE line_id=$1 AND handed=$2 ORDER BY seq`, s.line, false)
	if err != nil {
		return nil, fmt.Errorf("list incoming calls: %w", err)
	}
	defer rows.Close()
	var out []Call
	for rows.Next() {
		var c Call
		var at int64
		if err := rows.Scan(&c.Seq, &c.From, &at); err != nil {
			return nil, err
		}
		c.LineID, c.At = s.line, time.UnixMilli(at)
		c.ID = "call:" + s.line + ":" + strconv.FormatInt(c.Seq, 10)
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *store) markCallHanded(ctx context.Context, seq int64) error {
	_, err := s.db.Exec(ctx, `UPDATE bubbled_sms_call SET handed=$3 WHERE line_id=$1 AND seq=$2`, s.line, seq, true)
	return err
}

// pruneOutbox forgets finished messages (and their outcomes, once handed)
// older than cutoff. Parts sent within the pacing month are kept by the
// caller's cutoff.
func (s *store) pruneOutbox(ctx context.Context, cutoff time.Time) error {
	c := cutoff.UnixMilli()
	return s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if _, err := s.db.Exec(ctx, `DELETE FROM bubbled_sms_outbox_part WHERE line_id=$1 AND msg_id IN
			(SELECT id FROM bubbled_sms_outbox WHERE line_id=$1 AND state<>$2 AND updated_at < $3)`, s.line, msgQueued, c); err != nil {
			return err
		}
		if _, err := s.db.Exec(ctx, `DELETE FROM bubbled_sms_outbox WHERE line_id=$1 AND state<>$2 AND updated_at < $3`, s.line, msgQueued, c); err != nil {
			return err
		}
		if _, err := s.db.Exec(ctx, `DELETE FROM bubbled_sms_outcome WHERE line_id=$1 AND handed=$2 AND created_at < $3`, s.line, true, c); err != nil {
			return err
		}
		_, err := s.db.Exec(ctx, `DELETE FROM bubbled_sms_call WHERE line_id=$1 AND handed=$2 AND called_at < $3`, s.line, true, c)
		return err
	})
}
