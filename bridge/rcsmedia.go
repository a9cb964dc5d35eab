package bridge

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
)

// rcsMedia serves the files of RCS messages to the provider, which fetches
// them by URL: each file gets an unguessable token and lives until the
// message's time-to-live ends. The files are stored in the database, so a
// restart does not break a message the provider has not fetched yet.
type rcsMedia struct {
	db      *dbutil.Database
	baseURL string // <public_url><webhook_path>/media/
	ttl     time.Duration
	log     *zap.Logger
}

func newRCSMedia(ctx context.Context, db *dbutil.Database, baseURL string, ttl time.Duration, log *zap.Logger) (*rcsMedia, error) {
	_, err := db.Exec(ctx, `CREATE TABLE IF NOT EXISTS bubbled_rcs_media (
		token      TEXT PRIMARY KEY,
		mime_type  TEXT NOT NULL,
		data       BYTEA NOT NULL,
		expires_at BIGINT NOT NULL
	)`)
	if err != nil {
		return nil, fmt.Errorf("create the RCS media table: %w", err)
	}
	return &rcsMedia{db: db, baseURL: baseURL, ttl: ttl, log: log}, nil
}

// put stores a file and returns the URL the provider fetches it from.
func (m *rcsMedia) put(ctx context.Context, mimeType string, data []byte) (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b[:])
	now := time.Now()
	_, err := m.db.Exec(ctx, `DELETE FROM bubbled_rcs_media WHERE expires_at < $1`, now.UnixMilli())
	if err != nil {
		return "", fmt.Errorf("prune RCS media: %w", err)
	}
	_, err = m.db.Exec(ctx, `INSERT INTO bubbled_rcs_media (token, mime_type, data, expires_at) VALUES ($1, $2, $3, $4)`,
		token, mimeType, data, now.Add(m.ttl).UnixMilli())
	if err != nil {
		return "", fmt.Errorf("store a file for RCS: %w", err)
	}
	return m.baseURL + token, nil
}

// ServeHTTP answers GET <webhook_path>/media/<token>.
func (m *rcsMedia) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	token := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	var mimeType string
	var data []byte
	err := m.db.QueryRow(r.Context(), `SELECT mime_type, data FROM bubbled_rcs_media WHERE token=$1 AND expires_at >= $2`,
		token, time.Now().UnixMilli()).Scan(&mimeType, &data)
	if errors.Is(err, sql.ErrNoRows) {
		http.NotFound(w, r)
		return
	} else if err != nil {
		m.log.Warn("failed to read an RCS file", zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", mimeType)
	w.Header().Set("Cache-Control", "private, no-store")
	_, _ = w.Write(data)
}
