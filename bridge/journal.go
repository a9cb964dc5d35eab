package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"go.mau.fi/util/dbutil"
	"go.mau.fi/util/exhttp"
	"go.uber.org/zap"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
)

// journal.go closes a gap between the homeserver and bridgev2: mautrix's
// appservice answers a transaction 200 as soon as its events are in an
// in-memory channel, so a crash right after that loses what a person wrote.
// The journal stores every message event of a transaction in the database
// before the transaction is acknowledged, marks it handled once bridgev2 has
// handled it (the line's outbox has it by then), and at start replays what
// was stored but never handled. Replays are safe: the outbox, the RCS
// provider and the router all refuse a second send of the same event ID.

// journalEventTypes are the events the journal keeps: what people write.
var journalEventTypes = map[string]bool{
	event.EventMessage.Type:   true,
	event.EventEncrypted.Type: true,
	event.EventSticker.Type:   true,
}

// journalMaxAge is how old an unhandled event may be and still be replayed.
const journalMaxAge = 24 * time.Hour

// Journal is the appservice transaction journal. Create it with NewJournal,
// add Middleware to the appservice before it starts, call Handled from an
// event handler that runs after bridgev2's, and Replay once the bridge runs.
type Journal struct {
	db  *dbutil.Database
	log *zap.Logger
}

// journalVersionTable tracks the journal's own schema version.
const journalVersionTable = "bubbled_journal_version"

var journalUpgrades = dbutil.BuildUpgradeTable().
	WithRaw(0, 1, 0, "create the transaction journal", dbutil.TxnModeOn, journalV1).
	Finish()

// journalV1 creates the journal table. Before the journal had versioned
// upgrades it created the same table with IF NOT EXISTS at every start, so
// databases from then already have it: IF NOT EXISTS keeps this step
// harmless for them.
func journalV1(ctx context.Context, db *dbutil.Database) error {
	_, err := db.Exec(ctx, `CREATE TABLE IF NOT EXISTS bubbled_as_event (
		event_id    TEXT PRIMARY KEY,
		body        TEXT NOT NULL,
		received_at BIGINT NOT NULL,
		handled_at  BIGINT
	)`)
	return err
}

// NewJournal creates or upgrades the journal's table in db (its version is
// tracked in bubbled_journal_version).
func NewJournal(ctx context.Context, db *dbutil.Database, log *zap.Logger) (*Journal, error) {
	if err := db.Child(journalVersionTable, journalUpgrades, nil).Upgrade(ctx); err != nil {
		return nil, fmt.Errorf("create the transaction journal: %w", err)
	}
	return &Journal{db: db, log: log}, nil
}

// Middleware stores the message events of each appservice transaction
// before mautrix sees (and acknowledges) it. If they cannot be stored the
// homeserver gets a 500 and sends the transaction again.
func (j *Journal) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || !strings.HasPrefix(r.URL.Path, "/_matrix/app/v1/transactions/") {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		_ = r.Body.Close()
		if err != nil {
			http.Error(w, "read the transaction", http.StatusBadRequest)
			return
		}
		if err := j.store(r.Context(), body); err != nil {
			j.log.Error("failed to journal a transaction; the homeserver will send it again", zap.Error(err))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"errcode":"M_UNKNOWN","error":"could not store the transaction"}`))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

var _ exhttp.Middleware = (*Journal)(nil).Middleware

// store keeps the journaled events of one transaction body. A body that is
// not JSON is left to mautrix, which answers it with an error.
func (j *Journal) store(ctx context.Context, body []byte) error {
	var txn struct {
		Events []json.RawMessage `json:"events"`
	}
	if json.Unmarshal(body, &txn) != nil {
		return nil
	}
	now := time.Now().UnixMilli()
	return j.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		for _, raw := range txn.Events {
			var head struct {
				ID       string  `json:"event_id"`
				Type     string  `json:"type"`
				StateKey *string `json:"state_key"`
			}
			if json.Unmarshal(raw, &head) != nil || head.ID == "" || head.StateKey != nil || !journalEventTypes[head.Type] {
				continue
			}
			_, err := j.db.Exec(ctx, `INSERT INTO bubbled_as_event (event_id, body, received_at) VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING`,
				head.ID, string(raw), now)
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// Handled marks an event handled. It is an appservice event handler for the
// journaled types, registered after bridgev2's so that it runs when bridgev2
// is done with the event (the appservice processes events one by one and
// bridge.portal_event_buffer is 0). Decrypted events keep the encrypted
// event's ID, so a message that could not be decrypted stays unhandled.
func (j *Journal) Handled(ctx context.Context, evt *event.Event) {
	if evt.Type == event.EventEncrypted {
		return // handled once its decrypted form has been
	}
	_, err := j.db.Exec(ctx, `UPDATE bubbled_as_event SET handled_at=$2 WHERE event_id=$1 AND handled_at IS NULL`, evt.ID.String(), time.Now().UnixMilli())
	if err != nil {
		j.log.Warn("failed to mark an event handled", zap.Error(err))
	}
}

// Replay sends the events stored but never handled (from the last day) back
// through the appservice endpoint as one transaction, and forgets handled
// events older than a day. It returns how many it replayed.
func (j *Journal) Replay(ctx context.Context, as *appservice.AppService) (int, error) {
	cutoff := time.Now().Add(-journalMaxAge).UnixMilli()
	if _, err := j.db.Exec(ctx, `DELETE FROM bubbled_as_event WHERE received_at < $1`, cutoff); err != nil {
		return 0, fmt.Errorf("prune the transaction journal: %w", err)
	}
	rows, err := j.db.Query(ctx, `SELECT body FROM bubbled_as_event WHERE handled_at IS NULL ORDER BY received_at`)
	if err != nil {
		return 0, fmt.Errorf("read the transaction journal: %w", err)
	}
	var events []json.RawMessage
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			_ = rows.Close()
			return 0, err
		}
		events = append(events, json.RawMessage(body))
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	if len(events) == 0 {
		return 0, nil
	}
	body, _ := json.Marshal(map[string]any{"events": events})
	url := fmt.Sprintf("http://%s/_matrix/app/v1/transactions/bubbled-replay-%d", loopbackAddr(as.Host.Address()), time.Now().UnixNano())
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+as.Registration.ServerToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("replay %d journaled events: %w", len(events), err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("replay %d journaled events: HTTP %d", len(events), resp.StatusCode)
	}
	return len(events), nil
}

// loopbackAddr turns a listen address into one to connect to: an
// unspecified host (0.0.0.0, ::, or none) becomes the loopback address.
func loopbackAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	ip := net.ParseIP(host)
	switch {
	case host == "" || ip != nil && ip.IsUnspecified() && ip.To4() != nil:
		return net.JoinHostPort("127.0.0.1", port)
	case ip != nil && ip.IsUnspecified():
		return net.JoinHostPort("::1", port)
	}
	return addr
}

// Backlog counts the journaled events not handled yet (for the
// bubbled_journal_backlog gauge).
func (j *Journal) Backlog(ctx context.Context) (int, error) {
	var n int
	err := j.db.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_as_event WHERE handled_at IS NULL`).Scan(&n)
	return n, err
}
