package sms

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.mau.fi/util/dbutil"

	"github.com/bubbled/bubbled/connectors/sms/pdu"
)

// versionTable is the sms package's own schema version table, so its
// migrations are independent of the bridge's.
const versionTable = "bubbled_sms_version"

var upgradeTable = dbutil.BuildUpgradeTable().
	WithRaw(0, 1, 0, "create SMS line tables", dbutil.TxnModeOn, upgradeV1).
	WithRaw(1, 2, 0, "create SMS outbox, outcome and call tables", dbutil.TxnModeOn, upgradeV2).
	WithRaw(2, 3, 0, "remember the missing parts of incomplete SMS", dbutil.TxnModeOn, upgradeV3).
	Finish()

// upgradeV3 adds the numbers of the parts an incomplete concatenated
// message was delivered without ("2,3"; "" for complete messages).
func upgradeV3(ctx context.Context, db *dbutil.Database) error {
	_, err := db.Exec(ctx, `ALTER TABLE bubbled_sms_inbox ADD COLUMN missing TEXT NOT NULL DEFAULT ''`)
	return err
}

// schemaV1 is valid for both SQLite and Postgres. Times are Unix
// milliseconds.
var schemaV1 = []string{
	`CREATE TABLE bubbled_sms_counter (
		line_id  TEXT PRIMARY KEY,
		next_ref INTEGER NOT NULL
	)`,
	`CREATE TABLE bubbled_sms_part (
		line_id     TEXT    NOT NULL,
		sender      TEXT    NOT NULL,
		ref         INTEGER NOT NULL,
		total       INTEGER NOT NULL,
		seq         INTEGER NOT NULL,
		tpdu_hash   TEXT    NOT NULL,
		pdu         TEXT    NOT NULL,
		received_at BIGINT  NOT NULL,
		PRIMARY KEY (line_id, sender, ref, total, seq)
	)`,
	`CREATE TABLE bubbled_sms_part_seen (
		line_id   TEXT   NOT NULL,
		tpdu_hash TEXT   NOT NULL,
		inbox_id  TEXT   NOT NULL,
		seen_at   BIGINT NOT NULL,
		PRIMARY KEY (line_id, tpdu_hash)
	)`,
	`CREATE TABLE bubbled_sms_inbox (
		id           TEXT    PRIMARY KEY,
		line_id      TEXT    NOT NULL,
		seq          BIGINT  NOT NULL,
		hash         TEXT    NOT NULL UNIQUE,
		sender       TEXT    NOT NULL,
		text         TEXT    NOT NULL,
		sent_at      BIGINT  NOT NULL,
		parts        INTEGER NOT NULL,
		received_at  BIGINT  NOT NULL,
		delivered    BOOLEAN NOT NULL DEFAULT false,
		delivered_at BIGINT
	)`,
	`CREATE UNIQUE INDEX bubbled_sms_inbox_seq_idx ON bubbled_sms_inbox (line_id, seq)`,
	`CREATE TABLE bubbled_sms_bad_pdu (
		hash          TEXT    PRIMARY KEY,
		line_id       TEXT    NOT NULL,
		source        TEXT    NOT NULL,
		storage_index INTEGER NOT NULL,
		pdu           TEXT    NOT NULL,
		reason        TEXT    NOT NULL,
		received_at   BIGINT  NOT NULL
	)`,
}

func upgradeV1(ctx context.Context, db *dbutil.Database) error {
	for _, q := range schemaV1 {
		if _, err := db.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// Upgrade creates or updates the SMS tables (bubbled_sms_*) in db, tracking
// their schema version in the table bubbled_sms_version. It is safe to call
// on every start and must run before any Line uses db.
func Upgrade(ctx context.Context, db *dbutil.Database) error {
	if err := db.Child(versionTable, upgradeTable, nil).Upgrade(ctx); err != nil {
		return fmt.Errorf("upgrade SMS tables: %w", err)
	}
	return upgradePush(ctx, db)
}

// store persists one line's SMS state. Safe for concurrent use.
type store struct {
	db   *dbutil.Database
	line string
	now  func() time.Time

	seqMu sync.Mutex
	seqs  map[string]*seqBlock // reserved counter values (reserve, nextSeq)
}

// nextRef returns the next concatenation reference of the line and
// advances the persisted counter. A fresh line starts at a random value so
// a wiped database does not reuse recent references.
func (s *store) nextRef(ctx context.Context) (uint16, error) {
	var ref int
	err := s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		err := s.db.QueryRow(ctx, `SELECT next_ref FROM bubbled_sms_counter WHERE line_id=$1`, s.line).Scan(&ref)
		if errors.Is(err, sql.ErrNoRows) {
			var b [2]byte
			if _, err := rand.Read(b[:]); err != nil {
				return err
			}
			ref = int(binary.BigEndian.Uint16(b[:]))
			_, err = s.db.Exec(ctx, `INSERT INTO bubbled_sms_counter (line_id, next_ref) VALUES ($1, $2)`, s.line, (ref+1)%65536)
			return err
		} else if err != nil {
			return err
		}
		_, err = s.db.Exec(ctx, `UPDATE bubbled_sms_counter SET next_ref=$2 WHERE line_id=$1`, s.line, (ref+1)%65536)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("allocate concatenation reference: %w", err)
	}
	return uint16(ref), nil
}

// tpduOf strips the SMSC field from a PDU-mode hex string.
func tpduOf(hexPDU string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(hexPDU))
	if err != nil {
		return nil, fmt.Errorf("PDU is not hex: %w", err)
	}
	if len(b) == 0 || 1+int(b[0]) > len(b) {
		return nil, errors.New("PDU shorter than its SMSC field")
	}
	return b[1+int(b[0]):], nil
}

// hashTPDUs identifies a message by its line and TPDU bytes (in part order).
func hashTPDUs(line string, tpdus ...[]byte) string {
	h := sha256.New()
	h.Write([]byte(line))
	for _, t := range tpdus {
		h.Write([]byte{0})
		h.Write(t)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// messageID derives the stable Message.ID from a message hash.
func messageID(line, hash string) string { return "sms:" + line + ":" + hash[:16] }

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// saved says what a save call did.
type saved struct {
	id        string // inbox ID when a complete message is stored (new or known)
	duplicate bool   // the PDU was stored before
	partial   int    // parts of the group stored so far, when incomplete
}

// errConcatCollision reports a part whose slot (sender, ref, total, seq) is
// taken by a different PDU: two messages reuse one reference.
var errConcatCollision = errors.New("another message's part already uses this concatenation reference and sequence number")

// saveDeliver persists an SMS-DELIVER: a single-part message goes straight
// to the inbox; a part goes to the parts table and, when it completes its
// group, the group becomes one inbox row in the same transaction.
func (s *store) saveDeliver(ctx context.Context, m *pdu.Message, hexPDU string) (saved, error) {
	tpdu, err := tpduOf(hexPDU)
	if err != nil {
		return saved{}, err
	}
	var res saved
	err = s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		res = saved{}
		if (m.Concat == nil || m.Concat.Total <= 1) && isWAPPush(m) {
			port, _ := pushPort(m)
			res.id, res.duplicate, err = s.insertPush(ctx, hashTPDUs(s.line, tpdu), m.Address, port, m.Data, m.SCTS)
			return err
		}
		if m.Concat == nil || m.Concat.Total <= 1 {
			hash := hashTPDUs(s.line, tpdu)
			res.id, res.duplicate, err = s.insertInbox(ctx, hash, m.Address, m.Text, m.SCTS, 1, nil)
			return err
		}
		return s.savePart(ctx, m, hexPDU, tpdu, &res)
	})
	return res, err
}

func (s *store) insertInbox(ctx context.Context, hash, sender, text string, sent time.Time, parts int, missing []int) (string, bool, error) {
	id := messageID(s.line, hash)
	// seq orders messages by arrival; only the line's run loop inserts, so
	// MAX+1 inside the transaction does not race.
	r, err := s.db.Exec(ctx, `INSERT INTO bubbled_sms_inbox (id, line_id, seq, hash, sender, text, sent_at, parts, received_at, delivered, missing)
		VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM bubbled_sms_inbox WHERE line_id=$2), $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT DO NOTHING`,
		id, s.line, hash, sender, text, millis(sent), parts, s.now().UnixMilli(), false, joinInts(missing))
	if err != nil {
		return "", false, fmt.Errorf("store inbound SMS: %w", err)
	}
	n, err := r.RowsAffected()
	if err != nil {
		return "", false, err
	}
	return id, n == 0, nil
}

func (s *store) savePart(ctx context.Context, m *pdu.Message, hexPDU string, tpdu []byte, res *saved) error {
	partHash := hashTPDUs(s.line, tpdu)
	var inbox string
	err := s.db.QueryRow(ctx, `SELECT inbox_id FROM bubbled_sms_part_seen WHERE line_id=$1 AND tpdu_hash=$2`, s.line, partHash).Scan(&inbox)
	if err == nil {
		res.id, res.duplicate = inbox, true
		return nil
	} else if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	c := m.Concat
	var existing string
	err = s.db.QueryRow(ctx, `SELECT tpdu_hash FROM bubbled_sms_part WHERE line_id=$1 AND sender=$2 AND ref=$3 AND total=$4 AND seq=$5`,
		s.line, m.Address, int(c.Ref), int(c.Total), int(c.Seq)).Scan(&existing)
	switch {
	case err == nil && existing != partHash:
		return errConcatCollision
	case err == nil:
		res.duplicate = true
	case errors.Is(err, sql.ErrNoRows):
		_, err = s.db.Exec(ctx, `INSERT INTO bubbled_sms_part (line_id, sender, ref, total, seq, tpdu_hash, pdu, received_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			s.line, m.Address, int(c.Ref), int(c.Total), int(c.Seq), partHash, strings.ToUpper(hexPDU), s.now().UnixMilli())
		if err != nil {
			return fmt.Errorf("store SMS part: %w", err)
		}
	default:
		return err
	}
	g := group{sender: m.Address, ref: int(c.Ref), total: int(c.Total)}
	parts, err := s.groupParts(ctx, g)
	if err != nil {
		return err
	}
	if len(parts) < g.total {
		res.partial = len(parts)
		return nil
	}
	res.id, err = s.completeGroup(ctx, g, parts, false)
	return err
}

type group struct {
	sender string
	ref    int
	total  int
}

type storedPart struct {
	seq      int
	pdu      string
	tpduHash string
	msg      *pdu.Message
	tpdu     []byte
}

func (s *store) groupParts(ctx context.Context, g group) ([]storedPart, error) {
	rows, err := s.db.Query(ctx, `SELECT seq, pdu, tpdu_hash FROM bubbled_sms_part
		WHERE line_id=$1 AND sender=$2 AND ref=$3 AND total=$4 ORDER BY seq`, s.line, g.sender, g.ref, g.total)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var parts []storedPart
	for rows.Next() {
		var p storedPart
		if err := rows.Scan(&p.seq, &p.pdu, &p.tpduHash); err != nil {
			return nil, err
		}
		if p.msg, err = pdu.Decode(p.pdu, true); err != nil {
			return nil, fmt.Errorf("decode stored SMS part %d/%d: %w", p.seq, g.total, err)
		}
		if p.tpdu, err = tpduOf(p.pdu); err != nil {
			return nil, err
		}
		parts = append(parts, p)
	}
	return parts, rows.Err()
}

// completeGroup turns the parts of g into one inbox row and deletes them.
// With partial set, missing parts are marked in the text instead.
func (s *store) completeGroup(ctx context.Context, g group, parts []storedPart, partial bool) (string, error) {
	if len(parts) > 0 && isWAPPush(parts[0].msg) {
		return s.completePush(ctx, g, parts, partial)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].seq < parts[j].seq })
	msgs := make([]*pdu.Message, len(parts))
	tpdus := make([][]byte, len(parts))
	for i, p := range parts {
		msgs[i], tpdus[i] = p.msg, p.tpdu
	}
	var text string
	var missing []int
	if partial {
		text, missing = joinPartial(parts, g.total)
	} else {
		var err error
		if text, err = pdu.Join(msgs); err != nil {
			return "", fmt.Errorf("join %d SMS parts: %w", len(parts), err)
		}
	}
	sent := msgs[0].SCTS
	hash := hashTPDUs(s.line, tpdus...)
	id, _, err := s.insertInbox(ctx, hash, g.sender, text, sent, len(parts), missing)
	if err != nil {
		return "", err
	}
	now := s.now().UnixMilli()
	for _, p := range parts {
		if _, err := s.db.Exec(ctx, `INSERT INTO bubbled_sms_part_seen (line_id, tpdu_hash, inbox_id, seen_at)
			VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, s.line, p.tpduHash, id, now); err != nil {
			return "", err
		}
	}
	_, err = s.db.Exec(ctx, `DELETE FROM bubbled_sms_part WHERE line_id=$1 AND sender=$2 AND ref=$3 AND total=$4`,
		s.line, g.sender, g.ref, g.total)
	return id, err
}

// missingMark stands for the text of a part that never arrived: it names
// the part, so the reader knows where the gap is and how big.
func missingMark(seq, total int) string {
	return fmt.Sprintf("[part %d of %d missing]", seq, total)
}

// joinPartial joins the parts that arrived, marking each missing one, and
// returns the numbers of the missing parts.
func joinPartial(parts []storedPart, total int) (string, []int) {
	var b strings.Builder
	var missing []int
	next := 1
	gap := func(upTo int) {
		for ; next < upTo; next++ {
			b.WriteString(missingMark(next, total))
			missing = append(missing, next)
		}
	}
	for _, p := range parts {
		gap(p.seq)
		b.WriteString(p.msg.Text)
		next = p.seq + 1
	}
	gap(total + 1)
	return b.String(), missing
}

// joinInts and splitInts store part numbers as "2,3".
func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func splitInts(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// flushStale delivers groups whose newest part is older than cutoff as
// incomplete messages: better a gap than a message lost forever.
func (s *store) flushStale(ctx context.Context, cutoff time.Time) ([]string, error) {
	rows, err := s.db.Query(ctx, `SELECT sender, ref, total FROM bubbled_sms_part WHERE line_id=$1
		GROUP BY sender, ref, total HAVING MAX(received_at) < $2`, s.line, cutoff.UnixMilli())
	if err != nil {
		return nil, err
	}
	var groups []group
	for rows.Next() {
		var g group
		if err := rows.Scan(&g.sender, &g.ref, &g.total); err != nil {
			rows.Close()
			return nil, err
		}
		groups = append(groups, g)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var ids []string
	for _, g := range groups {
		err := s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
			parts, err := s.groupParts(ctx, g)
			if err != nil || len(parts) == 0 {
				return err
			}
			id, err := s.completeGroup(ctx, g, parts, true)
			if id != "" { // "" = an incomplete WAP push, kept as bad PDUs
				ids = append(ids, id)
			}
			return err
		})
		if err != nil {
			return ids, fmt.Errorf("flush incomplete SMS group: %w", err)
		}
	}
	return ids, nil
}

// forgetBad drops a kept PDU that turned out usable after all.
func (s *store) forgetBad(ctx context.Context, hexPDU string) error {
	h := sha256.Sum256([]byte(s.line + "\x00" + strings.ToUpper(hexPDU)))
	_, err := s.db.Exec(ctx, `DELETE FROM bubbled_sms_bad_pdu WHERE hash=$1`, hex.EncodeToString(h[:]))
	return err
}

// saveBad keeps a PDU that could not be used (undecodable, unsupported or
// colliding), so deleting it from the SIM loses nothing.
func (s *store) saveBad(ctx context.Context, source string, index int, hexPDU, reason string) error {
	h := sha256.Sum256([]byte(s.line + "\x00" + strings.ToUpper(hexPDU)))
	_, err := s.db.Exec(ctx, `INSERT INTO bubbled_sms_bad_pdu (hash, line_id, source, storage_index, pdu, reason, received_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
		hex.EncodeToString(h[:]), s.line, source, index, hexPDU, reason, s.now().UnixMilli())
	if err != nil {
		return fmt.Errorf("store unusable PDU: %w", err)
	}
	return nil
}

// undelivered returns the inbox messages not yet accepted by the handler,
// oldest first.
func (s *store) undelivered(ctx context.Context) ([]*Message, error) {
	rows, err := s.db.Query(ctx, `SELECT id, sender, text, sent_at, received_at, parts, missing FROM bubbled_sms_inbox
		WHERE line_id=$1 AND delivered=$2 ORDER BY seq`, s.line, false)
	if err != nil {
		return nil, fmt.Errorf("list undelivered SMS: %w", err)
	}
	defer rows.Close()
	var out []*Message
	for rows.Next() {
		var m Message
		var sent, recv int64
		var missing string
		if err := rows.Scan(&m.ID, &m.From, &m.Text, &sent, &recv, &m.Parts, &missing); err != nil {
			return nil, err
		}
		m.Missing = splitInts(missing)
		m.LineID = s.line
		if sent == 0 {
			sent = recv
		}
		m.Time = time.UnixMilli(sent)
		out = append(out, &m)
	}
	return out, rows.Err()
}

func (s *store) markDelivered(ctx context.Context, id string) error {
	_, err := s.db.Exec(ctx, `UPDATE bubbled_sms_inbox SET delivered=$2, delivered_at=$3 WHERE id=$1`, id, true, s.now().UnixMilli())
	if err != nil {
		return fmt.Errorf("mark SMS %s delivered: %w", id, err)
	}
	return nil
}

// prune forgets delivered messages and seen-part markers older than cutoff;
// they only serve to recognise a PDU read twice.
func (s *store) prune(ctx context.Context, cutoff time.Time) error {
	c := cutoff.UnixMilli()
	if _, err := s.db.Exec(ctx, `DELETE FROM bubbled_sms_inbox WHERE line_id=$1 AND delivered=$2 AND delivered_at < $3`, s.line, true, c); err != nil {
		return err
	}
	_, err := s.db.Exec(ctx, `DELETE FROM bubbled_sms_part_seen WHERE line_id=$1 AND seen_at < $2`, s.line, c)
	return err
}
