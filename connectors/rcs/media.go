package rcs

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"sync"
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
	// Clock tells the time of expiry and times the pruning; nil means
	// fallback.SystemClock.
	Clock fallback.Clock
	// PruneEvery is how often the goroutine of [MediaStore.Start] deletes
	// expired files; default 10 minutes.
	PruneEvery time.Duration
}

// MediaStore serves the files of outgoing RCS messages to the provider,
// which fetches them by URL: each file gets an unguessable token and lives
// until the message's time-to-live ends. The files are kept in the database
// (table bubbled_rcs_media, made by [Upgrade]), so a restart does not break
// a message the provider has not fetched yet. Expired files are deleted
// when a file is stored and by one pruning goroutine, started by Start and
// stopped by Stop. Safe for concurrent use.
type MediaStore struct {
	db  *dbutil.Database
	cfg MediaConfig

	mu   sync.Mutex
	stop context.CancelFunc // guarded by mu; set while the pruner runs
	done chan struct{}      // guarded by mu; closed when the pruner exits
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
	if cfg.PruneEvery <= 0 {
		cfg.PruneEvery = 10 * time.Minute
	}
	return &MediaStore{db: db, cfg: cfg}
}

// Start starts the goroutine that deletes expired files every PruneEvery
// (the first pass at once), so a file the provider never fetched does not
// outlive its TTL when no new file arrives. It returns an error if the
// pruner already runs; it stops when ctx is done or Stop is called.
func (m *MediaStore) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stop != nil {
		return errors.New("RCS media pruner already started")
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	m.stop, m.done = cancel, done
	go func() {
		defer close(done)
		for {
			if _, err := m.Prune(ctx); err != nil && ctx.Err() == nil {
				m.cfg.Log.Warn("failed to prune expired RCS media; trying again later", zap.Error(err))
			}
			if fallback.Sleep(ctx, m.cfg.Clock, m.cfg.PruneEvery) != nil {
				return
			}
		}
	}()
	return nil
}

// Stop stops the pruner and waits for it to exit. Safe to call more than
// once, and before Start.
func (m *MediaStore) Stop() {
	m.mu.Lock()
	cancel, done := m.stop, m.done
	m.stop, m.done = nil, nil
	m.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// Prune deletes the files whose TTL has ended and returns how many.
func (m *MediaStore) Prune(ctx context.Context) (int64, error) {
	res, err := m.db.Exec(ctx, `DELETE FROM bubbled_rcs_media WHERE expires_at < $1`, m.cfg.Clock.Now().UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune RCS media: %w", err)
	}
	return res.RowsAffected()
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
	if _, err := m.Prune(ctx); err != nil {
		return "", err
	}
	_, err := m.db.Exec(ctx, `INSERT INTO bubbled_rcs_media (token, mime_type, data, expires_at) VALUES ($1, $2, $3, $4)`,
		token, mimeType, data, now.Add(m.cfg.TTL).UnixMilli())
	if err != nil {
		return "", fmt.Errorf("store a file for RCS: %w", err)
	}
	return m.cfg.BaseURL + token, nil
}

// ServeHTTP answers GET (and HEAD) <BaseURL path><token> with the file, or
// 404 once it expired. The file comes as a download that no browser renders
// or sniffs: Content-Disposition attachment, X-Content-Type-Options nosniff,
// a sandboxing Content-Security-Policy, and the sender's MIME type only when
// it is a media or plain type ([SafeContentType]).
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
	h := w.Header()
	h.Set("Content-Type", SafeContentType(mimeType))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", "attachment")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Cache-Control", "private, no-store")
	_, _ = w.Write(data)
}

// safeTypes are the MIME types served as they are besides audio/*, video/*
// and image/* (SVG aside): none of them runs script when opened.
var safeTypes = map[string]bool{
	"text/plain": true, "text/vcard": true, "text/x-vcard": true, "text/calendar": true,
	"application/pdf": true, "application/octet-stream": true,
}

// SafeContentType returns the Content-Type to serve a file declared as
// mimeType with: the bare media type (parameters dropped) when it is
// audio, video, an image other than SVG, or one of a few inert types (text
// keeps only charset=utf-8); application/octet-stream for anything else
// (HTML, SVG, XML, script, malformed values), so a file from a contact never
// renders as a page on bubbled's origin.
func SafeContentType(mimeType string) string {
	mt, params, err := mime.ParseMediaType(mimeType)
	if err != nil {
		return "application/octet-stream"
	}
	major, minor, _ := strings.Cut(mt, "/")
	switch {
	case strings.Contains(minor, "xml") || strings.Contains(minor, "html") || strings.Contains(minor, "script"):
		return "application/octet-stream"
	case major == "audio" || major == "video" || major == "image":
		return mt
	case !safeTypes[mt]:
		return "application/octet-stream"
	case major == "text" && strings.EqualFold(params["charset"], "utf-8"):
		return mt + "; charset=utf-8"
	}
	return mt
}
