package mms

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
)

// SendResult is the outcome of a queued m-send-req (Inbox.Send), handed to
// InboxConfig.OnSent once per send.
type SendResult struct {
	// Key is the caller's key given to Send (the bridge uses the Matrix
	// event ID).
	Key string
	// MessageID is the Message-ID of the MMSC's m-send-conf (for delivery
	// reports); "" when Err is set.
	MessageID string
	// Err is why the MMS did not go: a *SendError (the MMSC refused it
	// for good), an *HTTPError, or the last temporary error once the send
	// deadline passed.
	Err error
}

// Notice says for the user why the MMS did not go out ("" when it did).
func (r SendResult) Notice() string {
	var se *SendError
	switch {
	case r.Err == nil:
		return ""
	case errors.As(r.Err, &se):
		return "⚠️ The carrier refused your picture message (MMS): " + se.Reason() + "."
	}
	return fmt.Sprintf("⚠️ Your picture message (MMS) did not go out: %v.", r.Err)
}

// Outbox states: send (m-send-req stored, POST pending), report (m-send-conf
// or the final error stored, OnSent pending), done.
const (
	outSend   = "send"
	outReport = "report"
)

// outItem is one row of bubbled_mms_outbox, owned by the worker while it runs.
type outItem struct {
	key, state, messageID, errText string
	pdu                            []byte
	status                         ResponseStatus
	attempts                       int
	nextAt, deadline               time.Time
}

// Send stores req for sending under key (unique per line: the same key
// twice is one send, so a Matrix event redelivered after a restart is not
// sent again) and wakes the worker. Once it returns nil the MMS survives a
// restart: it is POSTed with backoff on temporary errors (network, 5xx,
// transient m-send-conf statuses) until InboxConfig.SendFor passes, and its
// m-send-conf is stored before OnSent hears of it, so an MMS the MMSC
// confirmed is never posted again. A restart between the POST and storing
// its answer posts it again with the same Transaction-ID.
func (in *Inbox) Send(ctx context.Context, key string, req *PDU) error {
	if req.Type != SendReq {
		return fmt.Errorf("queue MMS: a %s is not an m-send-req", req.Type)
	}
	b, err := Encode(req)
	if err != nil {
		return fmt.Errorf("queue MMS: %w", err)
	}
	now := in.cfg.Clock.Now()
	_, err = in.db.Exec(ctx, `INSERT INTO bubbled_mms_outbox (line_id, send_key, pdu, state, next_at, deadline)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
		in.cfg.LineID, key, hex.EncodeToString(b), outSend, now.UnixMilli(), now.Add(in.cfg.SendFor).UnixMilli())
	if err != nil {
		return fmt.Errorf("store outgoing MMS: %w", err)
	}
	in.log.Info("queued MMS for sending", zap.String("key", key), zap.Int("recipients", len(req.To)), zap.Int("bytes", len(b)))
	in.wake()
	return nil
}

// SentKey returns the key of the MMS whose m-send-conf carried messageID
// ("" when none did): delivery reports name the Message-ID.
func (in *Inbox) SentKey(ctx context.Context, messageID string) (string, error) {
	var key string
	err := in.db.QueryRow(ctx, `SELECT send_key FROM bubbled_mms_outbox WHERE line_id=$1 AND message_id=$2`, in.cfg.LineID, messageID).Scan(&key)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("find sent MMS %s: %w", messageID, err)
	}
	return key, nil
}

func (in *Inbox) pendingSends(ctx context.Context) ([]*outItem, error) {
	rows, err := in.db.Query(ctx, `SELECT send_key, pdu, state, message_id, status, err_text, attempts, next_at, deadline
		FROM bubbled_mms_outbox WHERE line_id=$1 AND state<>$2 ORDER BY next_at, send_key`, in.cfg.LineID, stateDone)
	if err != nil {
		return nil, fmt.Errorf("list MMS outbox: %w", err)
	}
	defer rows.Close()
	var out []*outItem
	for rows.Next() {
		var it outItem
		var pdu string
		var next, deadline int64
		if err := rows.Scan(&it.key, &pdu, &it.state, &it.messageID, &it.status, &it.errText, &it.attempts, &next, &deadline); err != nil {
			return nil, err
		}
		if it.pdu, err = hex.DecodeString(pdu); err != nil {
			return nil, fmt.Errorf("stored outgoing MMS %s: %w", it.key, err)
		}
		it.nextAt, it.deadline = time.UnixMilli(next), time.UnixMilli(deadline)
		out = append(out, &it)
	}
	return out, rows.Err()
}

// workSends runs every due send one step as far as it goes and returns when
// the next one is due (zero: none).
func (in *Inbox) workSends(ctx context.Context) (time.Time, error) {
	items, err := in.pendingSends(ctx)
	if err != nil {
		return time.Time{}, err
	}
	var next time.Time
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		if it.nextAt.After(in.cfg.Clock.Now()) {
			next = earliest(next, it.nextAt)
			continue
		}
		err := in.post(ctx, it)
		if err == nil && it.state == outReport {
			err = in.report(ctx, it)
		}
		if err != nil && ctx.Err() == nil {
			next = earliest(next, in.sendLater(ctx, it, err))
		}
	}
	return next, nil
}

// post sends the stored m-send-req (state send) and stores the answer: the
// Message-ID, or the final refusal.
func (in *Inbox) post(ctx context.Context, it *outItem) error {
	if it.state != outSend {
		return nil
	}
	req, err := Decode(it.pdu)
	if err != nil {
		return in.finish(ctx, it, "", 0, fmt.Sprintf("the stored MMS does not decode: %v", err))
	}
	id, err := in.cfg.Client.Send(ctx, req)
	var se *SendError
	switch {
	case err == nil:
		in.log.Info("sent MMS", zap.String("key", it.key), zap.String("mms_message_id", id))
		return in.finish(ctx, it, id, ResponseOK, "")
	case ctx.Err() != nil:
		return err
	case errors.As(err, &se) && !se.Temporary():
		return in.finish(ctx, it, "", se.Status, se.Text)
	case !sendTemporary(err) || !in.cfg.Clock.Now().Before(it.deadline):
		in.log.Warn("gave up sending MMS", zap.String("key", it.key), zap.Error(err))
		return in.finish(ctx, it, "", 0, err.Error())
	}
	return err
}

// sendTemporary reports whether posting again may work: network errors,
// 5xx/408/429 and transient m-send-conf statuses (OMA-MMS-ENC 7.3.48).
func sendTemporary(err error) bool {
	var he *HTTPError
	var se *SendError
	switch {
	case errors.As(err, &se):
		return se.Temporary()
	case errors.As(err, &he):
		return he.Temporary()
	case errors.Is(err, ErrExpired), errors.As(err, new(*DecodeError)):
		return false
	}
	return true
}

// finish stores the outcome of the POST before anyone hears of it.
func (in *Inbox) finish(ctx context.Context, it *outItem, messageID string, status ResponseStatus, errText string) error {
	// Recorded even when Stop came meanwhile: the POST happened.
	_, err := in.db.Exec(context.WithoutCancel(ctx), `UPDATE bubbled_mms_outbox SET state=$3, message_id=$4, status=$5, err_text=$6, attempts=0, next_at=$7
		WHERE line_id=$1 AND send_key=$2`, in.cfg.LineID, it.key, outReport, messageID, int(status), errText, in.cfg.Clock.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("store the answer to MMS %s: %w", it.key, err)
	}
	it.state, it.messageID, it.status, it.errText, it.attempts = outReport, messageID, status, errText, 0
	return nil
}

// report hands the stored outcome to OnSent, then marks the send done.
func (in *Inbox) report(ctx context.Context, it *outItem) error {
	res := SendResult{Key: it.key, MessageID: it.messageID}
	switch {
	case it.status != ResponseOK && it.status != 0:
		res.Err = &SendError{Status: it.status, Text: it.errText}
	case it.messageID == "" && it.errText != "":
		res.Err = errors.New(it.errText)
	}
	if in.cfg.OnSent != nil {
		if err := in.cfg.OnSent(ctx, res); err != nil {
			return fmt.Errorf("report MMS %s to the bridge: %w", it.key, err)
		}
	}
	// Recorded even when Stop came meanwhile: the bridge has it.
	_, err := in.db.Exec(context.WithoutCancel(ctx), `UPDATE bubbled_mms_outbox SET state=$3 WHERE line_id=$1 AND send_key=$2`, in.cfg.LineID, it.key, stateDone)
	return err
}

func (in *Inbox) sendLater(ctx context.Context, it *outItem, cause error) time.Time {
	if it.state == outReport && in.cfg.Clock.Now().After(it.deadline) {
		// The outcome is stored; a bridge that never takes it must not keep
		// the row alive forever.
		in.log.Error("dropped the outcome of an MMS the bridge never took", zap.String("key", it.key), zap.Error(cause))
		if _, err := in.db.Exec(ctx, `UPDATE bubbled_mms_outbox SET state=$3 WHERE line_id=$1 AND send_key=$2`, in.cfg.LineID, it.key, stateDone); err != nil {
			in.log.Error("failed to store MMS send step", zap.String("key", it.key), zap.Error(err))
		}
		return time.Time{}
	}
	it.attempts++
	at := in.cfg.Clock.Now().Add(in.cfg.Retry.Delay(it.attempts, rand.Float64()))
	in.log.Warn("failed an MMS send step; will retry", zap.String("key", it.key), zap.String("step", it.state),
		zap.Int("attempt", it.attempts), zap.Time("retry_at", at), zap.Error(cause))
	_, err := in.db.Exec(ctx, `UPDATE bubbled_mms_outbox SET attempts=$3, next_at=$4 WHERE line_id=$1 AND send_key=$2`,
		in.cfg.LineID, it.key, it.attempts, at.UnixMilli())
	if err != nil {
		in.log.Error("failed to store MMS send retry", zap.String("key", it.key), zap.Error(err))
	}
	return at
}
