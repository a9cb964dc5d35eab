package mms_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	"go.uber.org/zap/zaptest"

	"github.com/bubbled/bubbled/connectors/mms"
	"github.com/bubbled/bubbled/connectors/mms/mmscfake"
	"github.com/bubbled/bubbled/fallback"
)

// sent is a fake OnSent that can fail a number of times first.
type sent struct {
	mu    sync.Mutex
	fail  int
	calls int
	ch    chan mms.SendResult
}

func newSent() *sent { return &sent{ch: make(chan mms.SendResult, 10)} }

func (s *sent) onSent(_ context.Context, r mms.SendResult) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail > 0 {
		s.fail--
		return errors.New("homeserver down")
	}
	s.ch <- r
	return nil
}

func (s *sent) wait(t *testing.T) mms.SendResult {
	t.Helper()
	select {
	case r := <-s.ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no send result")
		return mms.SendResult{}
	}
}

func newOutbox(t *testing.T, db *dbutil.Database, mmsc string, s *sent, sendFor time.Duration) *mms.Inbox {
	t.Helper()
	c, err := mms.NewClient(mms.ClientConfig{MMSC: mmsc, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := mms.InboxConfig{LineID: "line1", Client: c, OnSent: s.onSent, SendFor: sendFor,
		Retry: fallback.RetryPolicy{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond, Multiplier: 2, Jitter: -1}}
	return mms.NewInbox(cfg, db, zaptest.NewLogger(t), func(context.Context, *mms.Delivery) error { return nil })
}

func groupReq(t *testing.T) *mms.PDU {
	t.Helper()
	req, err := mms.NewSendReq([]string{"+15551230001", "+15551230002"}, "hi all", nil, 300<<10)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestOutboxSendOnceAcrossRestart: an MMS stored, then the process dies
// before the POST (the first inbox never runs); after the restart it is
// posted once, and a bridge failing to take the outcome, and a second
// restart, do not post it again.
func TestOutboxSendOnceAcrossRestart(t *testing.T) {
	f := mmscfake.Start(mmscfake.Options{})
	defer f.Close()
	db := openDB(t, filepath.Join(t.TempDir(), "b.db"))
	ctx := context.Background()
	req := groupReq(t)
	in1 := newOutbox(t, db, f.URL(), newSent(), 0)
	for range 2 { // a Matrix event redelivered: same key
		if err := in1.Send(ctx, "$event1", req); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.SendPosts(); n != 0 {
		t.Fatalf("posted %d before the worker ran", n)
	}
	s2 := newSent()
	s2.fail = 1
	in2 := newOutbox(t, db, f.URL(), s2, 0)
	in2.Start(ctx)
	r := s2.wait(t)
	in2.Stop()
	if r.Key != "$event1" || r.Err != nil || r.MessageID != mmscfake.MessageID(1) {
		t.Errorf("result %+v", r)
	}
	if key, err := in2.SentKey(ctx, r.MessageID); err != nil || key != "$event1" {
		t.Errorf("SentKey = %q, %v", key, err)
	}
	s3 := newSent()
	in3 := newOutbox(t, db, f.URL(), s3, 0)
	in3.Start(ctx)
	time.Sleep(300 * time.Millisecond)
	in3.Stop()
	if n, got := f.SendPosts(), f.SendReqs(); n != 1 || len(got) != 1 || len(got[0].To) != 2 || got[0].TransactionID != req.TransactionID {
		t.Errorf("MMSC got %d posts %+v, want exactly one m-send-req to two", n, got)
	}
	if s3.calls != 0 {
		t.Errorf("reported %d more times after done", s3.calls)
	}
	if pr := f.Problems(); len(pr) > 0 {
		t.Errorf("fake MMSC problems %q", pr)
	}
}

// TestOutboxRetriesAndRefusals: a transient m-send-conf status is retried
// with the same PDU until accepted; a permanent one fails at once; an MMSC
// unreachable past SendFor fails with the network error.
func TestOutboxRetriesAndRefusals(t *testing.T) {
	f := mmscfake.Start(mmscfake.Options{})
	defer f.Close()
	db := openDB(t, filepath.Join(t.TempDir(), "b.db"))
	ctx := context.Background()
	s := newSent()
	in := newOutbox(t, db, f.URL(), s, 0)
	f.Refuse(0xC1, "try later") // transient: sending address unresolved
	in.Start(ctx)
	defer in.Stop()
	if err := in.Send(ctx, "$busy", groupReq(t)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three refused posts", func() bool { return f.SendPosts() >= 3 })
	f.Refuse(0, "")
	if r := s.wait(t); r.Key != "$busy" || r.Err != nil || r.MessageID == "" {
		t.Errorf("after transient refusals: %+v", r)
	}
	f.Refuse(0xE2, "corrupt") // permanent: message format corrupt
	posts := f.SendPosts()
	if err := in.Send(ctx, "$bad", groupReq(t)); err != nil {
		t.Fatal(err)
	}
	r := s.wait(t)
	var se *mms.SendError
	if r.Key != "$bad" || !errors.As(r.Err, &se) || se.Temporary() || se.Text != "corrupt" {
		t.Errorf("permanent refusal: %+v", r)
	}
	time.Sleep(200 * time.Millisecond)
	if n := f.SendPosts() - posts; n != 1 {
		t.Errorf("a permanent refusal was posted %d times, want 1", n)
	}

	gone := mmscfake.Start(mmscfake.Options{})
	gone.Close()
	s2 := newSent()
	in2 := newOutbox(t, openDB(t, filepath.Join(t.TempDir(), "c.db")), gone.URL(), s2, 500*time.Millisecond)
	in2.Start(ctx)
	defer in2.Stop()
	if err := in2.Send(ctx, "$down", groupReq(t)); err != nil {
		t.Fatal(err)
	}
	if r := s2.wait(t); r.Err == nil || r.MessageID != "" {
		t.Errorf("unreachable MMSC past the deadline: %+v", r)
	}
}
