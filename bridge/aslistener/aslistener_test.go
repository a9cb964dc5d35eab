package aslistener

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream" // registers the sqlite3-fk-wal driver
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

const token = "hs-token-0123456789"

func openDB(t testing.TB, path string) *dbutil.Database {
	t.Helper()
	db, err := dbutil.NewWithDialect("file:"+path+"?_txlock=immediate", "sqlite3-fk-wal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func newJournal(t testing.TB, db *dbutil.Database, opts Options) *Journal {
	t.Helper()
	if opts.Log == nil {
		opts.Log = zaptest.NewLogger(t)
	}
	j, err := New(context.Background(), db, opts)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func txnBodyOf(evts ...string) string { return `{"events":[` + strings.Join(evts, ",") + `]}` }

func msg(id, sender, body string) string {
	return fmt.Sprintf(`{"type":"m.room.message","event_id":%q,"sender":%q,"room_id":"!r:x","content":{"msgtype":"m.text","body":%q}}`, id, sender, body)
}

func put(t testing.TB, h http.Handler, txnID, auth, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPut, "/_matrix/app/v1/transactions/"+txnID, strings.NewReader(body))
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func pending(t testing.TB, j *Journal) []Entry {
	t.Helper()
	es, err := j.store.next(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// countingBody fails the test if anything reads it.
type countingBody struct{ read bool }

func (b *countingBody) Read(p []byte) (int, error) { b.read = true; return 0, io.EOF }
func (b *countingBody) Close() error               { return nil }

// TestAuthentication: every /_matrix/app/ request needs the homeserver's
// token before its body is read, as a bearer header or the deprecated query
// parameter; refused transactions store nothing.
func TestAuthentication(t *testing.T) {
	j := newJournal(t, openDB(t, filepath.Join(t.TempDir(), "j.db")), Options{})
	var restSaw string
	rest := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { restSaw = r.Header.Get("Authorization") })
	h := Handler(token, 1<<20, j, rest, zaptest.NewLogger(t))
	for _, c := range []struct {
		name, method, target, auth string
		want                       int
		wantCode                   string
	}{
		{"no token", "PUT", "/_matrix/app/v1/transactions/a", "", 401, "M_UNAUTHORIZED"},
		{"not bearer", "PUT", "/_matrix/app/v1/transactions/b", "Basic " + token, 401, "M_UNAUTHORIZED"},
		{"wrong bearer", "PUT", "/_matrix/app/v1/transactions/c", "Bearer x" + token, 403, "M_FORBIDDEN"},
		{"prefix of the token", "PUT", "/_matrix/app/v1/transactions/d", "Bearer " + token[:5], 403, "M_FORBIDDEN"},
		{"wrong query token", "PUT", "/_matrix/app/v1/transactions/e?access_token=nope", "", 403, "M_FORBIDDEN"},
		{"right bearer, wrong query token", "PUT", "/_matrix/app/v1/transactions/e2?access_token=nope", "Bearer " + token, 403, "M_FORBIDDEN"},
		{"wrong token on another app path", "GET", "/_matrix/app/v1/users/@x:y", "Bearer nope", 403, "M_FORBIDDEN"},
		{"bearer token", "PUT", "/_matrix/app/v1/transactions/f", "Bearer " + token, 200, ""},
		{"query token", "PUT", "/_matrix/app/v1/transactions/g?access_token=" + token, "", 200, ""},
		{"both, matching", "PUT", "/_matrix/app/v1/transactions/h?access_token=" + token, "Bearer " + token, 200, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := &countingBody{}
			r := httptest.NewRequest(c.method, c.target, strings.NewReader(`{"events":[]}`))
			if c.want != 200 {
				r.Body = body
			}
			if c.auth != "" {
				r.Header.Set("Authorization", c.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != c.want || !strings.Contains(w.Body.String(), c.wantCode) {
				t.Fatalf("HTTP %d %s, want %d %s", w.Code, w.Body, c.want, c.wantCode)
			}
			if c.want != 200 && body.read {
				t.Fatal("the body of a refused request was read")
			}
		})
	}
	if es := pending(t, j); len(es) != 0 {
		t.Fatalf("%d events stored", len(es))
	}
	r := httptest.NewRequest("GET", "/_matrix/app/v1/users/@x:y?access_token="+token, nil)
	h.ServeHTTP(httptest.NewRecorder(), r)
	if restSaw != "Bearer "+token {
		t.Fatalf("mautrix saw Authorization %q; the query token should be moved into the header", restSaw)
	}
}

// TestBodyCap: a body over the cap is refused with 413 and stores nothing,
// whether its length is announced or not.
func TestBodyCap(t *testing.T) {
	j := newJournal(t, openDB(t, filepath.Join(t.TempDir(), "j.db")), Options{})
	h := Handler(token, 4096, j, http.NotFoundHandler(), zaptest.NewLogger(t))
	big := txnBodyOf(msg("$1", "@a:x", strings.Repeat("x", 5000)))
	if w := put(t, h, "announced", "Bearer "+token, big); w.Code != 413 {
		t.Fatalf("announced: HTTP %d, want 413", w.Code)
	}
	r := httptest.NewRequest(http.MethodPut, "/_matrix/app/v1/transactions/chunked", io.MultiReader(strings.NewReader(big)))
	r.ContentLength = -1
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 413 {
		t.Fatalf("chunked: HTTP %d, want 413", w.Code)
	}
	if es := pending(t, j); len(es) != 0 {
		t.Fatalf("%d events stored", len(es))
	}
}

// TestJournalFilterDedupeOrder: only kept events are journaled, a repeated
// transaction ID is stored once, bad bodies are refused, and the worker
// hands events over in arrival order and deletes each once handled.
func TestJournalFilterDedupeOrder(t *testing.T) {
	keep := func(e Event) bool { return e.State || e.Sender != "@bot:x" }
	j := newJournal(t, openDB(t, filepath.Join(t.TempDir(), "j.db")), Options{Keep: keep})
	h := Handler(token, 1<<20, j, http.NotFoundHandler(), zaptest.NewLogger(t))
	auth := "Bearer " + token
	put(t, h, "1", auth, txnBodyOf(msg("$a", "@alice:x", "one"), msg("$bot", "@bot:x", "ours"), `"not an event"`))
	put(t, h, "1", auth, txnBodyOf(msg("$a2", "@alice:x", "repeat")))
	put(t, h, "2", auth, txnBodyOf(`{"type":"m.room.member","state_key":"@bot:x","sender":"@bot:x","content":{}}`, msg("$b", "@alice:x", "two")))
	if w := put(t, h, "3", auth, `[1,2]`); w.Code != 400 || !strings.Contains(w.Body.String(), "M_NOT_JSON") {
		t.Fatalf("a list body: HTTP %d %s, want 400 M_NOT_JSON", w.Code, w.Body)
	}
	var mu sync.Mutex
	var got []string
	done := make(chan struct{})
	j.Start(context.Background(), func(_ context.Context, e Entry) {
		var v struct {
			Type    string
			Content struct{ Body string }
		}
		_ = json.Unmarshal(e.Raw, &v)
		mu.Lock()
		got = append(got, v.Type+":"+v.Content.Body)
		if len(got) == 3 {
			close(done)
		}
		mu.Unlock()
	})
	t.Cleanup(func() { _ = j.Stop(context.Background()) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("handled only %v", got)
	}
	want := []string{"m.room.message:one", "m.room.member:", "m.room.message:two"}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("handled %v, want %v", got, want)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(pending(t, j)) != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if es := pending(t, j); len(es) != 0 {
		t.Fatalf("%d handled events are still journaled", len(es))
	}
}

// TestSlowEventDoesNotStallTheHomeserver: while the worker is stuck on one
// event, later transactions are still answered at once.
func TestSlowEventDoesNotStallTheHomeserver(t *testing.T) {
	j := newJournal(t, openDB(t, filepath.Join(t.TempDir(), "j.db")), Options{})
	h := Handler(token, 1<<20, j, http.NotFoundHandler(), zaptest.NewLogger(t))
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	j.Start(context.Background(), func(context.Context, Entry) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
	})
	t.Cleanup(func() { close(release); _ = j.Stop(context.Background()) })
	put(t, h, "slow", "Bearer "+token, txnBodyOf(msg("$slow", "@a:x", "waits for its Megolm session")))
	<-started
	for i := 0; i < 200; i++ {
		if w := put(t, h, fmt.Sprint("t", i), "Bearer "+token, txnBodyOf(msg(fmt.Sprint("$", i), "@a:x", "x"))); w.Code != 200 {
			t.Fatalf("transaction %d: HTTP %d while the worker is busy", i, w.Code)
		}
	}
	if n := len(pending(t, j)); n != 201 {
		t.Fatalf("%d events journaled, want 201", n)
	}
}

// TestJournalSurvivesRestart: what was answered but not handled is handled
// by the next process; in memory (mautrix's way) it is gone.
func TestJournalSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	for _, memory := range []bool{false, true} {
		t.Run(fmt.Sprint("memory=", memory), func(t *testing.T) {
			first := newJournal(t, openDB(t, path), Options{Memory: memory})
			put(t, Handler(token, 1<<20, first, nil, zaptest.NewLogger(t)), fmt.Sprint("r", memory), "Bearer "+token, txnBodyOf(msg("$r", "@a:x", "before the crash")))
			// The process dies here: the first journal's worker never ran.
			second := newJournal(t, openDB(t, path), Options{Memory: memory})
			handled := make(chan string, 1)
			second.Start(context.Background(), func(_ context.Context, e Entry) { handled <- string(e.Raw) })
			defer func() { _ = second.Stop(context.Background()) }()
			select {
			case raw := <-handled:
				if memory || !strings.Contains(raw, "before the crash") {
					t.Fatalf("memory=%v handled %s", memory, raw)
				}
			case <-time.After(2 * time.Second):
				if !memory {
					t.Fatal("the journaled event was not handled after the restart")
				}
			}
		})
	}
}

// TestStopWhileHandlingKeepsTheEvent: an event whose handler is still
// waiting (for a Megolm session) when bubbled stops is not deleted: its
// context ends, and the next start hands it over again.
func TestStopWhileHandlingKeepsTheEvent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	first := newJournal(t, openDB(t, path), Options{})
	put(t, Handler(token, 1<<20, first, nil, zaptest.NewLogger(t)), "w1", "Bearer "+token, txnBodyOf(msg("$w", "@a:x", "waiting for its key")))
	waiting := make(chan struct{})
	first.Start(context.Background(), func(ctx context.Context, _ Entry) {
		close(waiting)
		<-ctx.Done() // as a session wait does when Stop ends it
	})
	<-waiting
	if err := first.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(pending(t, first)); n != 1 {
		t.Fatalf("%d events journaled after a stop mid-event, want 1", n)
	}
	second := newJournal(t, openDB(t, path), Options{})
	handled := make(chan string, 1)
	second.Start(context.Background(), func(_ context.Context, e Entry) { handled <- string(e.Raw) })
	defer func() { _ = second.Stop(context.Background()) }()
	select {
	case raw := <-handled:
		if !strings.Contains(raw, "waiting for its key") {
			t.Fatalf("handled %s", raw)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the event was not handed over again after the restart")
	}
}

// TestFailpointAfterAck: the failpoint fires once, after the homeserver has
// its 200, before the worker sees the message.
func TestFailpointAfterAck(t *testing.T) {
	crashed := 0
	var j *Journal
	j = newJournal(t, openDB(t, filepath.Join(t.TempDir(), "j.db")), Options{Failpoint: FailpointAfterAck, Crash: func() {
		crashed++
		if n := len(pending(t, j)); n != 2 {
			t.Errorf("%d events journaled when the failpoint fired, want 2 (a member event and the message)", n)
		}
	}})
	h := Handler(token, 1<<20, j, nil, zaptest.NewLogger(t))
	put(t, h, "state", "Bearer "+token, txnBodyOf(`{"type":"m.room.member","state_key":"@a:x","sender":"@a:x","content":{}}`))
	if crashed != 0 {
		t.Fatal("the failpoint fired for a transaction without a message")
	}
	w := put(t, h, "m1", "Bearer "+token, txnBodyOf(msg("$m1", "@a:x", "hi")))
	put(t, h, "m2", "Bearer "+token, txnBodyOf(msg("$m2", "@a:x", "hi again")))
	if w.Code != 200 || crashed != 1 {
		t.Fatalf("HTTP %d, crashed %d times; want 200 and once", w.Code, crashed)
	}
}

// TestHalfSentRequestsAreClosed: a client that stops in the middle of its
// headers or its body is disconnected after the timeouts.
func TestHalfSentRequestsAreClosed(t *testing.T) {
	j := newJournal(t, nil, Options{Memory: true})
	lim := Limits{MaxBodyBytes: 1 << 20, ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 600 * time.Millisecond, IdleTimeout: time.Second, MaxHeaderBytes: 8192}
	srv, err := Listen("tcp", "127.0.0.1:0", Handler(token, lim.MaxBodyBytes, j, http.NotFoundHandler(), zaptest.NewLogger(t)), lim, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	for name, partial := range map[string]string{
		"half the headers": "PUT /_matrix/app/v1/transactions/x HTTP/1.1\r\nHost: a\r\n",
		"half the body": "PUT /_matrix/app/v1/transactions/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " + token +
			"\r\nContent-Length: 100\r\n\r\n{\"events\":",
		"idle after a request": "GET /_matrix/mau/live HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", srv.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, partial); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err = io.Copy(io.Discard, bufio.NewReader(conn))
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the connection was still open after %s", time.Since(start))
			}
		})
	}
}

// TestUpgradeDropsTheUnauthenticatedJournal: the first journal's table,
// whose rows may be forgeries, is dropped; the upgrade runs once.
func TestUpgradeDropsTheUnauthenticatedJournal(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, filepath.Join(t.TempDir(), "j.db"))
	if err := schemaV1(ctx, db); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO bubbled_as_event (event_id, body, received_at) VALUES ('$forged', '{}', 1)`); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		newJournal(t, db, Options{})
	}
	var version int
	if err := db.QueryRow(ctx, `SELECT version FROM `+versionTable).Scan(&version); err != nil || version != 2 {
		t.Fatalf("schema version %d, %v; want 2", version, err)
	}
	if ok, err := db.TableExists(ctx, "bubbled_as_event"); err != nil || ok {
		t.Fatalf("the old journal table still exists (%v)", err)
	}
}

// TestTransactionIDsAreForgotten: the worker forgets transaction IDs older
// than the retention, and only those.
func TestTransactionIDsAreForgotten(t *testing.T) {
	ctx := context.Background()
	j := newJournal(t, openDB(t, filepath.Join(t.TempDir(), "j.db")), Options{})
	old := time.Now().Add(-txnIDRetention - time.Hour).UnixMilli()
	for id, at := range map[string]int64{"old": old, "new": time.Now().UnixMilli()} {
		if _, _, err := j.store.add(ctx, id, nil, at); err != nil {
			t.Fatal(err)
		}
	}
	j.Start(ctx, func(context.Context, Entry) {})
	if err := j.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for id, wantDup := range map[string]bool{"old": false, "new": true} {
		if _, dup, err := j.store.add(ctx, id, nil, time.Now().UnixMilli()); err != nil || dup != wantDup {
			t.Errorf("transaction %s seen again: dup=%v, %v; want dup=%v", id, dup, err, wantDup)
		}
	}
}

// TestAheadDoesNotWaitBehindTheQueue: a to-device room key that arrives in
// a transaction after the message it decrypts reaches crypto while the
// worker still holds that message (which waits for the key), and the
// worker then deletes it without handing it over twice. Without Ahead the
// key sits behind the message: the wait runs out, as it did before
// (30 s in bubbled).
func TestAheadDoesNotWaitBehindTheQueue(t *testing.T) {
	const keyWait = 3 * time.Second
	for _, ahead := range []bool{true, false} {
		t.Run(fmt.Sprintf("ahead=%v", ahead), func(t *testing.T) {
			key := make(chan struct{})
			var once sync.Once
			var mu sync.Mutex
			var handed []string
			opts := Options{}
			if ahead {
				opts.Ahead = func(e Entry) bool {
					if e.Class != ClassToDevice {
						return false
					}
					once.Do(func() { close(key) })
					return true
				}
			}
			j := newJournal(t, openDB(t, filepath.Join(t.TempDir(), "j.db")), opts)
			h := Handler(token, 1<<20, j, nil, zaptest.NewLogger(t))
			waited := make(chan time.Duration, 1)
			j.Start(context.Background(), func(ctx context.Context, e Entry) {
				mu.Lock()
				handed = append(handed, string(e.Class))
				mu.Unlock()
				if e.Class == ClassToDevice {
					once.Do(func() { close(key) })
					return
				}
				start := time.Now()
				select { // as waitForSession does
				case <-key:
				case <-time.After(keyWait):
				}
				waited <- time.Since(start)
			})
			defer func() { _ = j.Stop(context.Background()) }()
			put(t, h, "msg", "Bearer "+token, txnBodyOf(msg("$m", "@a:x", "needs the key")))
			put(t, h, "key", "Bearer "+token, `{"to_device":[{"type":"m.room.encrypted","sender":"@a:x","content":{"algorithm":"m.olm.v1.curve25519-aes-sha2"}}]}`)
			w := <-waited
			if ahead != (w < keyWait) {
				t.Fatalf("ahead=%v: the message waited %v for its key (the wait gives up after %v)", ahead, w, keyWait)
			}
			deadline := time.Now().Add(10 * time.Second)
			for len(pending(t, j)) > 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			want := []string{"timeline", "to_device"}
			if ahead {
				want = want[:1] // the key went ahead, once
			}
			if fmt.Sprint(handed) != fmt.Sprint(want) || len(pending(t, j)) != 0 {
				t.Fatalf("worker handed %v with %d left journaled, want %v and none", handed, len(pending(t, j)), want)
			}
		})
	}
}

// TestAheadEventsSurviveACrash: an event Ahead took but the worker had not
// deleted yet is handed over in order by the next start.
func TestAheadEventsSurviveACrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	first := newJournal(t, openDB(t, path), Options{Ahead: func(Entry) bool { return true }})
	put(t, Handler(token, 1<<20, first, nil, zaptest.NewLogger(t)), "k1", "Bearer "+token,
		`{"to_device":[{"type":"m.room.encrypted","sender":"@a:x","content":{}}]}`)
	// first never starts its worker: the process died before it got there.
	second := newJournal(t, openDB(t, path), Options{Ahead: func(Entry) bool { return true }})
	handled := make(chan Class, 1)
	second.Start(context.Background(), func(_ context.Context, e Entry) { handled <- e.Class })
	defer func() { _ = second.Stop(context.Background()) }()
	select {
	case c := <-handled:
		if c != ClassToDevice {
			t.Fatalf("handed a %s event, want the to-device one", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the event Ahead took was lost with the process")
	}
}

// TestTransactionsWithNothingKeptTouchNoTable: a transaction whose events
// are all filtered out (the bridge's own events coming back, most of the
// traffic) is answered 200 without a database write.
func TestTransactionsWithNothingKeptTouchNoTable(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "j.db"))
	j := newJournal(t, db, Options{Keep: func(e Event) bool { return e.Sender != "@bot:x" }})
	h := Handler(token, 1<<20, j, nil, zaptest.NewLogger(t))
	for _, id := range []string{"echo", "echo"} {
		if w := put(t, h, id, "Bearer "+token, txnBodyOf(msg("$e", "@bot:x", "the bot's own"))); w.Code != http.StatusOK {
			t.Fatalf("HTTP %d", w.Code)
		}
	}
	var n int
	if err := db.QueryRow(context.Background(), `SELECT (SELECT COUNT(*) FROM bubbled_as_txn) + (SELECT COUNT(*) FROM bubbled_as_queue)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d rows stored for transactions with nothing kept", n)
	}
}

// countingStore counts the worker's table reads.
type countingStore struct {
	store
	mu    sync.Mutex
	reads int
}

func (s *countingStore) next(ctx context.Context, limit int) ([]Entry, error) {
	s.mu.Lock()
	s.reads++
	s.mu.Unlock()
	return s.store.next(ctx, limit)
}

func (s *countingStore) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// TestFreshEventsOnceInOrder: once the worker has read the table to its
// end, stored events reach it from memory (no table read per transaction);
// when it falls far behind it reads the table again. Either way each event
// is handled once, in the order it was stored, and deleted.
func TestFreshEventsOnceInOrder(t *testing.T) {
	j := newJournal(t, openDB(t, filepath.Join(t.TempDir(), "j.db")), Options{Log: zap.NewNop()})
	cs := &countingStore{store: j.store}
	j.store = cs
	h := Handler(token, 1<<20, j, http.NotFoundHandler(), zap.NewNop())
	var mu sync.Mutex
	var seqs []int64
	count := map[string]int{}
	slow := make(chan struct{}) // closed: the handler stops dawdling
	j.Start(context.Background(), func(_ context.Context, e Entry) {
		select {
		case <-slow:
		default:
			time.Sleep(2 * time.Millisecond)
		}
		var v struct {
			EventID string `json:"event_id"`
		}
		_ = json.Unmarshal(e.Raw, &v)
		mu.Lock()
		seqs = append(seqs, e.Seq)
		count[v.EventID]++
		mu.Unlock()
	})
	t.Cleanup(func() { _ = j.Stop(context.Background()) })
	handled := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seqs)
	}
	waitHandled := func(n int) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for handled() < n && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if got := handled(); got != n {
			t.Fatalf("handled %d events, want %d", got, n)
		}
	}
	// A burst from 4 senders at once, far more than maxFresh while the
	// handler is slow: the worker falls behind and reads the table.
	const senders, each = 4, maxFresh / 2
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("%d-%d", s, i)
				if w := put(t, h, "b"+id, "Bearer "+token, txnBodyOf(msg("$"+id, "@a:x", "burst"))); w.Code != 200 {
					t.Errorf("transaction %s: HTTP %d", id, w.Code)
					return
				}
			}
		}()
	}
	wg.Wait()
	j.aheadMu.Lock()
	dropped := j.dropped
	j.aheadMu.Unlock()
	if dropped == 0 {
		t.Error("the burst never sent the worker back to the table")
	}
	close(slow)
	waitHandled(senders * each)
	// One sender, one transaction at a time, the worker keeping up.
	reads := cs.readCount()
	for i := range 200 {
		put(t, h, fmt.Sprint("s", i), "Bearer "+token, txnBodyOf(msg(fmt.Sprint("$s", i), "@a:x", "steady")))
		waitHandled(senders*each + i + 1)
	}
	if n := cs.readCount() - reads; n > 5 {
		t.Errorf("the worker read the table %d times for 200 transactions it kept up with", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("event %d handled after %d", seqs[i], seqs[i-1])
		}
	}
	for id, n := range count {
		if n != 1 {
			t.Errorf("%s handled %d times", id, n)
		}
	}
	if len(count) != senders*each+200 {
		t.Errorf("%d distinct events handled, want %d", len(count), senders*each+200)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(pending(t, j)) != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if es := pending(t, j); len(es) != 0 {
		t.Fatalf("%d handled events are still journaled", len(es))
	}
}
