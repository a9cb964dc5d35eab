package sms

import (
	"context"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.mau.fi/util/dbutil"

	"github.com/bubbled/bubbled/connectors/sms/pdu"
)

// WAPPushPort is the WDP port of connectionless WAP push (MMS
// notifications, SI, provisioning): 8-bit SMS to this port are pushes, not
// text.
const WAPPushPort = 2948

// Push is a complete binary SMS addressed to an application port (today:
// WAP push, port 2948), reassembled from its parts. The bridge's MMS
// receiver decodes Data (a WSP push PDU).
type Push struct {
	// ID is stable across restarts ("push:<line>:<hash>").
	ID     string
	LineID string
	From   string
	Port   int
	Data   []byte
	// Time is the service centre time stamp of the first part.
	Time time.Time
}

// PushHandler receives pushes like Handler receives messages: nil means
// handed over for good; an error keeps the push and retries later.
type PushHandler func(ctx context.Context, p *Push) error

// SetPushHandler sets the receiver of WAP pushes. Pushes stored while
// there is none wait (persisted) until one is set. Any goroutine.
func (l *Line) SetPushHandler(h PushHandler) { l.in.pushes.setHandler(h) }

// pushPort returns the destination port of a 16-bit (IE 0x05) or 8-bit
// (IE 0x04) application port addressing IE in an 8-bit message's UDH.
func pushPort(m *pdu.Message) (int, bool) {
	if m.Alphabet != pdu.EightBit || len(m.UDH) < 2 {
		return 0, false
	}
	for i := 1; i+1 < len(m.UDH); {
		id, n := m.UDH[i], int(m.UDH[i+1])
		if i+2+n > len(m.UDH) {
			break
		}
		switch {
		case id == 0x05 && n == 4:
			return int(m.UDH[i+2])<<8 | int(m.UDH[i+3]), true
		case id == 0x04 && n == 2:
			return int(m.UDH[i+2]), true
		}
		i += 2 + n
	}
	return 0, false
}

// isWAPPush reports whether m is (a part of) a WAP push.
func isWAPPush(m *pdu.Message) bool {
	p, ok := pushPort(m)
	return ok && p == WAPPushPort
}

// The push table has its own version table so that it upgrades
// independently of the line tables.
const pushVersionTable = "bubbled_sms_push_version"

var pushUpgradeTable = dbutil.BuildUpgradeTable().
	WithRaw(0, 1, 0, "create WAP push table", dbutil.TxnModeOn, func(ctx context.Context, db *dbutil.Database) error {
		_, err := db.Exec(ctx, `CREATE TABLE bubbled_sms_push (
			id           TEXT    PRIMARY KEY,
			line_id      TEXT    NOT NULL,
			seq          BIGINT  NOT NULL,
			sender       TEXT    NOT NULL,
			port         INTEGER NOT NULL,
			data         TEXT    NOT NULL,
			sent_at      BIGINT  NOT NULL,
			received_at  BIGINT  NOT NULL,
			delivered    BOOLEAN NOT NULL DEFAULT false,
			delivered_at BIGINT
		)`)
		return err
	}).
	Finish()

func upgradePush(ctx context.Context, db *dbutil.Database) error {
	if err := db.Child(pushVersionTable, pushUpgradeTable, nil).Upgrade(ctx); err != nil {
		return fmt.Errorf("upgrade WAP push table: %w", err)
	}
	return nil
}

// insertPush stores a complete push; the same TPDUs stored twice give the
// same ID and no second row.
func (s *store) insertPush(ctx context.Context, hash, sender string, port int, data []byte, sent time.Time) (string, bool, error) {
	id := "push:" + s.line + ":" + hash[:16]
	r, err := s.db.Exec(ctx, `INSERT INTO bubbled_sms_push (id, line_id, seq, sender, port, data, sent_at, received_at, delivered)
		VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM bubbled_sms_push WHERE line_id=$2), $3, $4, $5, $6, $7, $8)
		ON CONFLICT DO NOTHING`,
		id, s.line, sender, port, hex.EncodeToString(data), millis(sent), s.now().UnixMilli(), false)
	if err != nil {
		return "", false, fmt.Errorf("store WAP push: %w", err)
	}
	n, err := r.RowsAffected()
	if err != nil {
		return "", false, err
	}
	return id, n == 0, nil
}

// completePush joins the 8-bit data of a complete push group, stores it and
// drops the parts. An incomplete push (partial) is useless: its parts are
// kept in bubbled_sms_bad_pdu instead.
func (s *store) completePush(ctx context.Context, g group, parts []storedPart, partial bool) (string, error) {
	sort.Slice(parts, func(i, j int) bool { return parts[i].seq < parts[j].seq })
	var id string
	if partial {
		for _, p := range parts {
			reason := fmt.Sprintf("WAP push part %d of %d whose other parts never arrived", p.seq, g.total)
			if err := s.saveBad(ctx, "push", -1, p.pdu, reason); err != nil {
				return "", err
			}
		}
	} else {
		var data []byte
		tpdus := make([][]byte, len(parts))
		for i, p := range parts {
			data = append(data, p.msg.Data...)
			tpdus[i] = p.tpdu
		}
		port, _ := pushPort(parts[0].msg)
		var err error
		if id, _, err = s.insertPush(ctx, hashTPDUs(s.line, tpdus...), g.sender, port, data, parts[0].msg.SCTS); err != nil {
			return "", err
		}
		now := s.now().UnixMilli()
		for _, p := range parts {
			if _, err := s.db.Exec(ctx, `INSERT INTO bubbled_sms_part_seen (line_id, tpdu_hash, inbox_id, seen_at)
				VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, s.line, p.tpduHash, id, now); err != nil {
				return "", err
			}
		}
	}
	_, err := s.db.Exec(ctx, `DELETE FROM bubbled_sms_part WHERE line_id=$1 AND sender=$2 AND ref=$3 AND total=$4`,
		s.line, g.sender, g.ref, g.total)
	return id, err
}

// undeliveredPushes returns the pushes not yet accepted, oldest first.
func (s *store) undeliveredPushes(ctx context.Context) ([]*Push, error) {
	rows, err := s.db.Query(ctx, `SELECT id, sender, port, data, sent_at, received_at FROM bubbled_sms_push
		WHERE line_id=$1 AND delivered=$2 ORDER BY seq`, s.line, false)
	if err != nil {
		return nil, fmt.Errorf("list undelivered WAP pushes: %w", err)
	}
	defer rows.Close()
	var out []*Push
	for rows.Next() {
		var p Push
		var data string
		var sent, recv int64
		if err := rows.Scan(&p.ID, &p.From, &p.Port, &data, &sent, &recv); err != nil {
			return nil, err
		}
		if p.Data, err = hex.DecodeString(strings.TrimSpace(data)); err != nil {
			return nil, fmt.Errorf("stored WAP push %s: %w", p.ID, err)
		}
		p.LineID = s.line
		if sent == 0 {
			sent = recv
		}
		p.Time = time.UnixMilli(sent)
		out = append(out, &p)
	}
	return out, rows.Err()
}

func (s *store) markPushDelivered(ctx context.Context, id string) error {
	_, err := s.db.Exec(ctx, `UPDATE bubbled_sms_push SET delivered=$2, delivered_at=$3 WHERE id=$1`, id, true, s.now().UnixMilli())
	if err != nil {
		return fmt.Errorf("mark WAP push %s delivered: %w", id, err)
	}
	return nil
}
