package rcs

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.mau.fi/util/dbutil"
	"go.uber.org/zap"

	"github.com/bubbled/bubbled/fallback"
)

// MediaConfig configures a [MediaStore].
type MediaConfig struct {
	// BaseURL is the public URL files are served under, ending in "/":
	// <network.rcs.public_url><network.rcs.webhook_path>/media/.
	BaseURL string
	// TTL is how long a file stays fetchable: the messages' time-to-live
	// (network.rcs.message_ttl).
	TTL time.Duration
	// Log receives read failures; nil means no logging.
	Log *zap.Logger
	// Clock tells the time of expiry; nil means fallback.SystemClock.
	Clock fallback.Clock
}

// MediaStore serves the files of outgoing RCS messages to the provider,
// which fetches them by URL: each file gets an unguessable token and lives
// until the message's time-to-live ends. The files are kept in the database
// (table bubbled_rcs_media, made by [Upgrade]), so a restart does not break
// a message the provider has not fetched yet. It starts no goroutine and is
// safe for concurrent use.
type MediaStore struct {
	db  *dbutil.Database
	cfg MediaConfig
}

// NewMediaStore returns the media store on db; run [Upgrade] first. It does
// no I/O.
func NewMediaStore(db *dbutil.Database, cfg MediaConfig) *MediaStore {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Clock == nil {
		cfg.Clock = fallback.SystemClock{}
	}
	return &MediaStore{db: db, cfg: cfg}
}

// upgradeMedia creates the media table. Before it was a versioned upgrade
// the bridge created the same table with IF NOT EXISTS at start, so
// databases from then already have it: IF NOT EXISTS keeps this step
// harmless for them.
func upgradeMedia(ctx context.Context, db *dbutil.Database) error {
	_, err := db.Exec(ctx, `CREATE TABLE IF NOT EXISTS bubbled_rcs_media (
		token      TEXT PRIMARY KEY,
		mime_type  TEXT NOT NULL,
		data       BYTEA NOT NULL,
		expires_at BIGINT NOT NULL
	)`)
	return err
}

// Put stores a file, first dropping expired ones, and returns the URL the
// provider fetches it from.
func (m *MediaStore) Put(ctx context.Context, mimeType string, data []byte) (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b[:])
	now := m.cfg.Clock.Now()
	_, err := m.db.Exec(ctx, `DELETE FROM bubbled_rcs_media WHERE expires_at < $1`, now.UnixMilli())
	if err != nil {
		return "", fmt.Errorf("prune RCS media: %w", err)
	}
	_, err = m.db.Exec(ctx, `INSERT INTO bubbled_rcs_media (token, mime_type, data, expires_at) VALUES ($1, $2, $3, $4)`,
		token, mimeType, data, now.Add(m.cfg.TTL).UnixMilli())
	if err != nil {
		return "", fmt.Errorf("store a file for RCS: %w", err)
	}
	return m.cfg.BaseURL + token, nil
}

// ServeHTTP answers GET (and HEAD) <BaseURL path><token> with the file, or
// 404 once it expired.
func (m *MediaStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	token := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	var mimeType string
	var data []byte
	err := m.db.QueryRow(r.Context(), `SELECT mime_type, data FROM bubbled_rcs_media WHERE token=$1 AND expires_at >= $2`,
		token, m.cfg.Clock.Now().UnixMilli()).Scan(&mimeType, &data)
	if errors.Is(err, sql.ErrNoRows) {
		http.NotFound(w, r)
		return
	} else if err != nil {
		m.cfg.Log.Warn("failed to read an RCS file", zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", mimeType)
	w.Header().Set("Cache-Control", "private, no-store")
	_, _ = w.Write(data)
}
