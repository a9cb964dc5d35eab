package rcs

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	"go.uber.org/zap/zaptest"

	"github.com/bubbled/bubbled/fallback/fallbacktest"
)

// mediaDB opens a fresh SQLite database without any table.
func mediaDB(t *testing.T) *dbutil.Database {
	t.Helper()
	db, err := dbutil.NewWithDialect("file:"+filepath.Join(t.TempDir(), "media.db")+"?_txlock=immediate", "sqlite3-fk-wal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestMediaUpgradeKeepsOldTable: a database where the bridge created the
// media table itself (before it was a versioned upgrade) keeps the table
// and its files through Upgrade, which can run again.
func TestMediaUpgradeKeepsOldTable(t *testing.T) {
	db := mediaDB(t)
	ctx := context.Background()
	if err := upgradeMedia(ctx, db); err != nil { // what the bridge used to run at start
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO bubbled_rcs_media (token, mime_type, data, expires_at) VALUES ('old', 'text/plain', $1, $2)`,
		[]byte("kept"), time.Now().Add(time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := Upgrade(ctx, db); err != nil {
			t.Fatalf("Upgrade #%d: %v", i+1, err)
		}
	}
	var version int
	if err := db.QueryRow(ctx, `SELECT version FROM `+versionTable).Scan(&version); err != nil || version != 2 {
		t.Fatalf("schema version = %d, %v; want 2", version, err)
	}
	m := NewMediaStore(db, MediaConfig{BaseURL: "https://bridge.test/rcs/media/", TTL: time.Hour})
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/rcs/media/old", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "kept" {
		t.Fatalf("GET an old file = %d %q", rec.Code, rec.Body.String())
	}
}

// TestMediaServe: a stored file is served under its URL until its TTL ends,
// then it is gone; unknown tokens are 404 and other methods 405.
func TestMediaServe(t *testing.T) {
	db := mediaDB(t)
	ctx := context.Background()
	if err := Upgrade(ctx, db); err != nil {
		t.Fatal(err)
	}
	clock := fallbacktest.NewClock(time.Now())
	base := "https://bridge.test/rcs/media/"
	m := NewMediaStore(db, MediaConfig{BaseURL: base, TTL: time.Hour, Clock: clock, Log: zaptest.NewLogger(t)})
	url, err := m.Put(ctx, "image/png", []byte("png bytes"))
	if err != nil || !strings.HasPrefix(url, base) || len(url) <= len(base)+32 {
		t.Fatalf("Put = %q, %v; want an unguessable URL under %s", url, err, base)
	}
	path := "/rcs/media/" + strings.TrimPrefix(url, base)
	get := func(method, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec
	}
	rec := get(http.MethodGet, path)
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != http.StatusOK || string(body) != "png bytes" || rec.Header().Get("Content-Type") != "image/png" || rec.Header().Get("Cache-Control") != "private, no-store" {
		t.Fatalf("GET = %d %q %v", rec.Code, body, rec.Header())
	}
	if rec := get(http.MethodHead, path); rec.Code != http.StatusOK {
		t.Fatalf("HEAD = %d", rec.Code)
	}
	if rec := get(http.MethodPost, path); rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST = %d, want 405", rec.Code)
	}
	if rec := get(http.MethodGet, "/rcs/media/nosuchtoken"); rec.Code != http.StatusNotFound {
		t.Fatalf("GET unknown = %d, want 404", rec.Code)
	}
	clock.Advance(time.Hour + time.Second)
	if rec := get(http.MethodGet, path); rec.Code != http.StatusNotFound {
		t.Fatalf("GET after the TTL = %d, want 404", rec.Code)
	}
	// The next Put prunes the expired file.
	if _, err := m.Put(ctx, "text/plain", []byte("x")); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_rcs_media`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("files after pruning = %d, %v; want 1", n, err)
	}
}
