package sms

import (
	"bytes"
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bubbled/bubbled/connectors/mms"
	"github.com/bubbled/bubbled/connectors/sms/modemsim"
	"github.com/bubbled/bubbled/connectors/sms/pdu"
)

// pushRecorder is a fake PushHandler.
type pushRecorder struct {
	mu     sync.Mutex
	pushes []*Push
	ch     chan *Push
}

func newPushRecorder() *pushRecorder { return &pushRecorder{ch: make(chan *Push, 20)} }

func (r *pushRecorder) handle(_ context.Context, p *Push) error {
	r.mu.Lock()
	r.pushes = append(r.pushes, p)
	r.mu.Unlock()
	r.ch <- p
	return nil
}

func (r *pushRecorder) wait(t *testing.T, ctx context.Context) *Push {
	t.Helper()
	select {
	case p := <-r.ch:
		return p
	case <-ctx.Done():
		t.Fatalf("no push delivered: %v", ctx.Err())
		return nil
	}
}

func (r *pushRecorder) expectNone(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case p := <-r.ch:
		t.Fatalf("unexpected push %+v", p)
	case <-time.After(d):
	}
}

// notificationPush is a real-sized MMS notification push (two SMS parts).
func notificationPush(t *testing.T, loc string) []byte {
	t.Helper()
	b, err := mms.Encode(&mms.PDU{Type: mms.NotificationInd, TransactionID: "tid-" + loc, From: mms.PLMN(alice),
		Class: "personal", Size: 29696, Expiry: mms.Expiry{After: 72 * time.Hour},
		ContentLocation: "http://mmsc.example/servlets/" + loc + "-0123456789012345678901234567890123456789"})
	if err != nil {
		t.Fatal(err)
	}
	return mms.EncodePush(1, b)
}

// TestReceiveWAPPush: a WAP push in concatenated 8-bit SMS (port 2948),
// with parts out of order and one part twice, is reassembled, kept out of
// the text inbox and the bad-PDU table, and handed to the PushHandler once.
func TestReceiveWAPPush(t *testing.T) {
	for _, opts := range map[string]modemsim.Options{
		"CMTI": {},
		"CMT":  {CNMIModes: "(0-3),(0,2),(0),(0-2),(0,1)", DefaultCNMI: "0,0,0,0,0"},
	} {
		s := newSimLine(t, opts, Config{})
		ctx := testCtx(t)
		pr := newPushRecorder()
		s.line.SetPushHandler(pr.handle)
		if err := s.line.StartReceiving(ctx); err != nil {
			t.Fatal(err)
		}
		push := notificationPush(t, "a")
		parts, err := s.sim.WAPPushPDUs(alice, push)
		if err != nil || len(parts) != 2 {
			t.Fatalf("push parts %d, %v", len(parts), err)
		}
		for _, h := range []string{parts[1], parts[1], parts[0]} {
			if err := s.sim.DeliverPDU(h); err != nil {
				t.Fatal(err)
			}
		}
		p := pr.wait(t, ctx)
		if !bytes.Equal(p.Data, push) || p.From != alice || p.Port != WAPPushPort || p.LineID != "line1" {
			t.Errorf("push %+v, want the %d bytes sent", p, len(push))
		}
		eventually(t, "SIM emptied", func() bool { return s.sim.Stored() == 0 })
		// The complete push read again (e.g. redelivered by the network).
		if err := s.sim.DeliverWAPPush(alice, push); err != nil {
			t.Fatal(err)
		}
		q := pr.wait(t, ctx) // a new concatenation reference: different TPDUs
		if !bytes.Equal(q.Data, push) {
			t.Errorf("second push data differs")
		}
		for _, h := range parts {
			if err := s.sim.DeliverPDU(h); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, "SIM emptied", func() bool { return s.sim.Stored() == 0 })
		pr.expectNone(t, 200*time.Millisecond)
		s.rec.expectNone(t, 10*time.Millisecond)
		var bad int
		if err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_sms_bad_pdu`).Scan(&bad); err != nil || bad != 0 {
			t.Errorf("bad PDUs %d, %v", bad, err)
		}
	}
}

// TestWAPPushWaitsForHandler: a push that arrives while no PushHandler is
// set (or before a restart) is persisted and handed over by the next Line.
func TestWAPPushWaitsForHandler(t *testing.T) {
	sim := startSim(t, modemsim.Options{})
	db := openDB(t, filepath.Join(t.TempDir(), "bubbled.db"))
	cfg := Config{ID: "line1", Device: sim.Path(), CommandTimeout: 2 * time.Second}
	ctx := testCtx(t)
	l1, _ := openLine(t, db, cfg, 0)
	if err := l1.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	push := notificationPush(t, "b")
	if err := sim.DeliverWAPPush(alice, push); err != nil {
		t.Fatal(err)
	}
	eventually(t, "SIM emptied", func() bool { return sim.Stored() == 0 })
	if err := l1.Close(); err != nil {
		t.Fatal(err)
	}
	l2, _ := openLine(t, db, cfg, 0)
	pr := newPushRecorder()
	l2.SetPushHandler(pr.handle)
	if err := l2.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	if p := pr.wait(t, ctx); !bytes.Equal(p.Data, push) {
		t.Errorf("push after restart differs")
	}
	pr.expectNone(t, 200*time.Millisecond)
}

// TestIncompleteWAPPushKept: a push whose second part never comes is kept
// whole in bubbled_sms_bad_pdu after the reassembly timeout, not delivered
// as text or as a push.
func TestIncompleteWAPPushKept(t *testing.T) {
	sim := startSim(t, modemsim.Options{})
	db := testDB(t)
	ctx := testCtx(t)
	now := time.Now()
	s := &store{db: db, line: "l1", now: func() time.Time { return now }}
	parts, err := sim.WAPPushPDUs(alice, notificationPush(t, "c"))
	if err != nil || len(parts) != 2 {
		t.Fatalf("parts %d, %v", len(parts), err)
	}
	m, err := pdu.Decode(parts[0], true)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := s.saveDeliver(ctx, m, parts[0]); err != nil || res.partial != 1 {
		t.Fatalf("save part 1: %+v, %v", res, err)
	}
	now = now.Add(25 * time.Hour)
	if _, err := s.flushStale(ctx, now.Add(-24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	var bad, pushes, inbox int
	_ = db.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_sms_bad_pdu WHERE pdu=$1`, parts[0]).Scan(&bad)
	_ = db.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_sms_push`).Scan(&pushes)
	_ = db.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_sms_inbox`).Scan(&inbox)
	if bad != 1 || pushes != 0 || inbox != 0 {
		t.Errorf("bad %d, pushes %d, inbox %d; want the part kept as bad only", bad, pushes, inbox)
	}
}
