package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"go.mau.fi/util/dbutil"
	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"

	"github.com/bubbled/bubbled/fallback"
)

// resume.go keeps the router's Send-as-SMS timers across restarts: a message
// waiting for its confirmation on Matrix or RCS is stored with its receipt
// (the text too, to re-send it) until it is confirmed or falls back, and
// ResumeConfirmations hands every stored wait back to fallback.Router.Resume
// at start, which fires at once when the deadline passed while bubbled was
// down.

const confirmVersionTable = "bubbled_confirm_version"

var confirmUpgrades = dbutil.BuildUpgradeTable().
	WithRaw(0, 1, 0, "store confirmation waits", dbutil.TxnModeOn, func(ctx context.Context, db *dbutil.Database) error {
		_, err := db.Exec(ctx, `CREATE TABLE bubbled_confirm_wait (msg_id TEXT PRIMARY KEY, conv TEXT NOT NULL,
			message TEXT NOT NULL, receipt TEXT NOT NULL)`)
		return err
	}).Finish()

// upgradeConfirmWaits creates the table of confirmation waits.
func upgradeConfirmWaits(ctx context.Context, db *dbutil.Database) error {
	if err := db.Child(confirmVersionTable, confirmUpgrades, nil).Upgrade(ctx); err != nil {
		return fmt.Errorf("create the confirmation waits table: %w", err)
	}
	return nil
}

// saveWait stores a message that awaits a confirmation (rcpt.ConfirmBy set).
func (c *Connector) saveWait(ctx context.Context, msg fallback.Message, rcpt fallback.Receipt) {
	m, err1 := json.Marshal(msg)
	r, err2 := json.Marshal(rcpt)
	if err1 != nil || err2 != nil {
		return
	}
	_, err := c.br.DB.Exec(ctx, `INSERT INTO bubbled_confirm_wait (msg_id, conv, message, receipt) VALUES ($1, $2, $3, $4)
		ON CONFLICT (msg_id) DO UPDATE SET message=excluded.message, receipt=excluded.receipt`, msg.ID, msg.Conversation, string(m), string(r))
	if err != nil {
		c.log.Warn("failed to store a confirmation wait; it will not survive a restart", zap.Error(err))
	}
}

// dropWait forgets the stored wait of a message.
func (c *Connector) dropWait(ctx context.Context, msgID string) {
	if _, err := c.br.DB.Exec(ctx, `DELETE FROM bubbled_confirm_wait WHERE msg_id=$1`, msgID); err != nil {
		c.log.Warn("failed to forget a confirmation wait", zap.Error(err))
	}
}

// confirm confirms one message with the router and forgets its wait.
func (c *Connector) confirm(ctx context.Context, msgID string) bool {
	ok := c.router.Confirm(msgID)
	if ok {
		c.dropWait(ctx, msgID)
		c.apiConfirmed(ctx, msgID)
	}
	return ok
}

// confirmRead confirms a conversation's messages up to upTo with the
// router and forgets the waits of those no longer pending.
func (c *Connector) confirmRead(ctx context.Context, conv string, rt fallback.Route, upTo time.Time) int {
	n := c.router.ConfirmRead(conv, rt, upTo)
	if n == 0 {
		return 0
	}
	pending := c.router.Pending()
	for _, w := range c.loadWaits(ctx, conv) {
		if !slices.Contains(pending, w.msg.ID) {
			c.dropWait(ctx, w.msg.ID)
			c.apiConfirmed(ctx, w.msg.ID)
		}
	}
	return n
}

// fellBack keeps the stored wait in step with a re-send down the ladder: a
// route that confirms too waits again, anything else ends the wait.
func (c *Connector) fellBack(ctx context.Context, f fallback.FellBack) {
	if f.Err == nil && f.Receipt != nil && !f.Receipt.ConfirmBy.IsZero() {
		c.saveWait(ctx, f.Message, *f.Receipt)
		return
	}
	c.dropWait(ctx, f.Message.ID)
}

type storedWait struct {
	msg  fallback.Message
	rcpt fallback.Receipt
}

// loadWaits reads the stored waits, of one conversation or ("") all.
func (c *Connector) loadWaits(ctx context.Context, conv string) []storedWait {
	rows, err := c.br.DB.Query(ctx, `SELECT message, receipt FROM bubbled_confirm_wait WHERE $1='' OR conv=$1`, conv)
	waits, err := dbutil.NewRowIterWithError(rows, func(row dbutil.Scannable) (w storedWait, err error) {
		var m, r string
		if err = row.Scan(&m, &r); err != nil {
			return w, err
		}
		if err = json.Unmarshal([]byte(m), &w.msg); err == nil {
			err = json.Unmarshal([]byte(r), &w.rcpt)
		}
		return w, err
	}, err).AsList()
	if err != nil {
		c.log.Warn("failed to read the confirmation waits", zap.Error(err))
	}
	return waits
}

// ResumeConfirmations restarts the confirmation timer of every message that
// was waiting when bubbled stopped; one whose deadline passed falls back at
// once, with its notice. Call it once the logins have started. It returns
// how many timers it started.
func (c *Connector) ResumeConfirmations(ctx context.Context) int {
	if c.router == nil {
		return 0
	}
	n := 0
	for _, w := range c.loadWaits(ctx, "") {
		if portal := c.portalOfConv(ctx, w.msg.Conversation); portal != nil {
			c.restoreRouteState(portal) // the router must know a pin before Resume
		}
		if by, ok := c.router.Resume(&w.msg, w.rcpt); ok {
			n++
			c.log.Info("resumed waiting for a confirmation", zap.String("route", string(w.rcpt.Route)), zap.Time("confirm_by", by))
		} else {
			c.dropWait(ctx, w.msg.ID)
		}
	}
	return n
}

// portalOfConv returns the portal of a router conversation, or nil.
func (c *Connector) portalOfConv(ctx context.Context, conv string) *bridgev2.Portal {
	portal, err := c.br.GetExistingPortalByKey(ctx, portalKeyOf(conv))
	if err != nil {
		return nil
	}
	return portal
}
