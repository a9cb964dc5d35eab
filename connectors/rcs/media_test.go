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

// TestMediaServedAsDownload: whatever MIME type the sender declared, a
// file is served so that no browser renders or sniffs it on bubbled's
// origin.
func TestMediaServedAsDownload(t *testing.T) {
	db := mediaDB(t)
	ctx := context.Background()
	if err := Upgrade(ctx, db); err != nil {
		t.Fatal(err)
	}
	m := NewMediaStore(db, MediaConfig{BaseURL: "https://bridge.test/rcs/media/", TTL: time.Hour, Log: zaptest.NewLogger(t)})
	for _, tc := range []struct{ declared, served string }{
		{"image/jpeg", "image/jpeg"},
		{"video/mp4; codecs=avc1", "video/mp4"},
		{"audio/amr", "audio/amr"},
		{"text/plain; charset=UTF-8", "text/plain; charset=utf-8"},
		{"text/plain; charset=utf-7", "text/plain"},
		{"text/vcard", "text/vcard"},
		{"application/pdf", "application/pdf"},
		{"text/html", "application/octet-stream"},
		{"TEXT/HTML; charset=utf-8", "application/octet-stream"},
		{"image/svg+xml", "application/octet-stream"},
		{"application/xhtml+xml", "application/octet-stream"},
		{"text/xml", "application/octet-stream"},
		{"application/javascript", "application/octet-stream"},
		{"text/javascript", "application/octet-stream"},
		{"application/x-msdownload", "application/octet-stream"},
		{"", "application/octet-stream"},
		{"not a type", "application/octet-stream"},
	} {
		t.Run(tc.declared, func(t *testing.T) {
			url, err := m.Put(ctx, tc.declared, []byte("<html><script>alert(1)</script></html>"))
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			m.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/rcs/media/"+url[strings.LastIndexByte(url, '/')+1:], nil))
			h := rec.Header()
			if rec.Code != http.StatusOK || h.Get("Content-Type") != tc.served {
				t.Errorf("declared %q: served %d as %q, want %q", tc.declared, rec.Code, h.Get("Content-Type"), tc.served)
			}
			if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Content-Disposition") != "attachment" ||
				!strings.Contains(h.Get("Content-Security-Policy"), "sandbox") {
				t.Errorf("declared %q: headers %v lack nosniff, attachment or a sandbox CSP", tc.declared, h)
			}
		})
	}
}

// TestMediaPrunedOnTimer: an expired file is deleted by the pruner on its
// own, without a new file arriving, and Stop ends the pruner (no timer
// left, a second Stop is harmless).
func TestMediaPrunedOnTimer(t *testing.T) {
	db := mediaDB(t)
	ctx := context.Background()
	if err := Upgrade(ctx, db); err != nil {
		t.Fatal(err)
	}
	clock := fallbacktest.NewClock(time.Now())
	m := NewMediaStore(db, MediaConfig{BaseURL: "https://bridge.test/rcs/media/", TTL: time.Hour, Clock: clock,
		PruneEvery: 5 * time.Minute, Log: zaptest.NewLogger(t)})
	if _, err := m.Put(ctx, "image/png", []byte("png")); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		var n int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_rcs_media`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err == nil {
		t.Error("a second Start did not fail")
	}
	waitTimers := func() {
		deadline := time.Now().Add(10 * time.Second)
		for clock.Timers() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the pruner never waited on the clock")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitTimers()
	if n := count(); n != 1 {
		t.Fatalf("files before the TTL = %d, want 1 (pruned too early)", n)
	}
	for i := 0; i < 13; i++ { // 65 minutes in 5-minute passes
		clock.Advance(5 * time.Minute)
		waitTimers()
	}
	deadline := time.Now().Add(10 * time.Second)
	for count() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the expired file was not pruned without a new Put")
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.Stop()
	if n := clock.Timers(); n != 0 {
		t.Errorf("%d timers left after Stop", n)
	}
	m.Stop()
}
