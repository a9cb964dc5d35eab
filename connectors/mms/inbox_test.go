package mms_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream" // registers the sqlite3-fk-wal driver
	"go.uber.org/zap/zaptest"

	"github.com/bubbled/bubbled/connectors/mms"
	"github.com/bubbled/bubbled/connectors/mms/mmscfake"
	"github.com/bubbled/bubbled/fallback"
)

func openDB(t *testing.T, path string) *dbutil.Database {
	t.Helper()
	db, err := dbutil.NewWithDialect("file:"+path+"?_txlock=immediate", "sqlite3-fk-wal")
	if err != nil {
		t.Fatal(err)
	}
	db.RawDB.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	if err := mms.Upgrade(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return db
}

// bridge is a fake DeliverFunc that can fail a number of times first.
type bridge struct {
	mu    sync.Mutex
	got   []*mms.Delivery
	fail  int
	calls int
	ch    chan *mms.Delivery
}

func newBridge() *bridge { return &bridge{ch: make(chan *mms.Delivery, 10)} }

func (b *bridge) deliver(_ context.Context, d *mms.Delivery) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	if b.fail > 0 {
		b.fail--
		return errors.New("homeserver down")
	}
	b.got = append(b.got, d)
	b.ch <- d
	return nil
}

func (b *bridge) wait(t *testing.T) *mms.Delivery {
	t.Helper()
	select {
	case d := <-b.ch:
		return d
	case <-time.After(30 * time.Second):
		t.Fatal("nothing delivered")
		return nil
	}
}

func (b *bridge) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case x := <-b.ch:
		t.Fatalf("unexpected delivery %+v", x)
	case <-time.After(d):
	}
}

func newInbox(t *testing.T, db *dbutil.Database, f *mmscfake.Server, mmsc string, b *bridge) *mms.Inbox {
	t.Helper()
	c, err := mms.NewClient(mms.ClientConfig{MMSC: mmsc, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := mms.InboxConfig{LineID: "line1", Client: c, Retry: fallback.RetryPolicy{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond, Multiplier: 2, Jitter: -1}}
	return mms.NewInbox(cfg, db, zaptest.NewLogger(t), b.deliver)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestInboxFetchOnceAcrossRestart: a notification seen twice, with the
// worker stopped between the push and the fetch (a restart), and a bridge
// that fails once: fetched once, delivered once, confirmed once.
func TestInboxFetchOnceAcrossRestart(t *testing.T) {
	f := mmscfake.Start(mmscfake.Options{})
	defer f.Close()
	db := openDB(t, filepath.Join(t.TempDir(), "b.db"))
	ctx := context.Background()
	push, loc := f.Hold(picture())

	b1 := newBridge()
	in1 := newInbox(t, db, f, f.URL(), b1)
	for range 2 {
		if err := in1.Notify(ctx, push, "+15551230001"); err != nil {
			t.Fatal(err)
		}
	}
	// Never started: the process died between the push and the fetch.
	b2 := newBridge()
	b2.fail = 1
	in2 := newInbox(t, db, f, f.URL(), b2)
	in2.Start(ctx)
	defer in2.Stop()
	if err := in2.Notify(ctx, push, "+15551230001"); err != nil {
		t.Fatal(err)
	}
	d := b2.wait(t)
	if d.Expired || d.From != "+15551230001" || d.Message == nil || !bytes.Equal(mms.Ordered(d.Message)[0].Data, f.Content(loc, 0)) {
		t.Errorf("delivery %+v", d)
	}
	waitFor(t, "notify response", func() bool { return len(f.NotifyResps()) == 1 })
	b2.none(t, 300*time.Millisecond)
	if n := f.Fetches(loc); n != 1 {
		t.Errorf("fetched %d times, want 1", n)
	}
	if r := f.NotifyResps()[0]; r.Status != byte(mms.StatusRetrieved) {
		t.Errorf("notify response %+v", r)
	}
	if pr := f.Problems(); len(pr) > 0 {
		t.Errorf("fake MMSC problems %q", pr)
	}
}

// TestInboxExpired: a message the MMSC no longer has, and one whose MMSC
// stays unreachable until the notification expires, become expiry notices.
func TestInboxExpired(t *testing.T) {
	f := mmscfake.Start(mmscfake.Options{})
	defer f.Close()
	db := openDB(t, filepath.Join(t.TempDir(), "b.db"))
	ctx := context.Background()
	b := newBridge()
	in := newInbox(t, db, f, f.URL(), b)
	in.Start(ctx)
	defer in.Stop()

	push, loc := f.Hold(picture())
	f.Expire(loc)
	if err := in.Notify(ctx, push, "+15551230001"); err != nil {
		t.Fatal(err)
	}
	if d := b.wait(t); !d.Expired || d.From != "+15551230001" || d.Message != nil {
		t.Errorf("delivery %+v, want an expiry notice", d)
	}
	waitFor(t, "notify response", func() bool { return len(f.NotifyResps()) == 1 })
	if r := f.NotifyResps()[0]; r.Status != byte(mms.StatusExpired) {
		t.Errorf("notify response %+v, want expired", r)
	}

	// An unreachable MMSC: a notification expiring in 1 s.
	gone := mmscfake.Start(mmscfake.Options{})
	m := picture()
	m.Expiry = time.Second
	push2, _ := gone.Hold(m)
	gone.Close()
	if err := in.Notify(ctx, push2, "+15551230001"); err != nil {
		t.Fatal(err)
	}
	if d := b.wait(t); !d.Expired {
		t.Errorf("delivery %+v, want an expiry notice", d)
	}
}

func TestInboxIgnoresOtherPushes(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "b.db"))
	b := newBridge()
	in := newInbox(t, db, nil, "http://127.0.0.1:1/", b)
	for _, p := range [][]byte{{1, 2, 3}, {7, 0x06, 0x01, 0xAE, 0x02, 0x05}, mms.EncodePush(1, []byte{0x8C, 0x82, 0x98})} {
		if err := in.Notify(context.Background(), p, "+15551230001"); err != nil {
			t.Errorf("Notify(%X) = %v, want nil (dropped)", p, err)
		}
	}
	in.Start(context.Background())
	defer in.Stop()
	b.none(t, 200*time.Millisecond)
}

func TestParticipantsAndOrder(t *testing.T) {
	p := &mms.PDU{From: "+15551230001/TYPE=PLMN", To: []string{"+15550001111/TYPE=PLMN", "+1 555 123 0003/TYPE=PLMN"},
		Cc: []string{"15551230002/TYPE=PLMN", "+15551230001/TYPE=PLMN"}}
	got := mms.Participants(p, "+15550001111", "US")
	want := []string{"+15551230001", "+15551230002", "+15551230003"}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("Participants = %q, want %q", got, want)
	}
	p.Parts = []mms.Part{
		{ContentType: mms.ContentType{Media: mms.MediaText}, ContentLocation: "t.txt", Data: []byte("text")},
		{ContentType: mms.ContentType{Media: mms.MediaSMIL}, Data: []byte(`<img src="cid:img"/><text src="t.txt"/>`)},
		{ContentType: mms.ContentType{Media: "image/png"}, ContentID: "img"},
		{ContentType: mms.ContentType{Media: "audio/amr"}, ContentID: "extra"},
	}
	o := mms.Ordered(p)
	if len(o) != 3 || o[0].ContentID != "img" || o[1].ContentLocation != "t.txt" || o[2].ContentID != "extra" {
		t.Errorf("Ordered = %+v", o)
	}
}
