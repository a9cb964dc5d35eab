package sms

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream" // registers the sqlite3-fk-wal driver
	"go.uber.org/zap/zaptest"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
	"github.com/bubbled/bubbled/fallback"
	"github.com/bubbled/bubbled/fallback/fallbacktest"
)

// The SMS transport passes the conformance suite every transport passes,
// against its real backend: a Line on the simulated modem over a pty. The
// setup here is self-contained (names prefixed tr) so it does not depend on
// the package's other test helpers.

func TestTransportConformance(t *testing.T) {
	fallbacktest.Conformance(t, fallbacktest.Harness{
		New: func(t *testing.T) fallback.Transport {
			sim, line := trLine(t)
			return &trConforming{Transport: &Transport{LineFor: func(string) *Line { return line }}, sim: sim, line: line}
		},
		Message: func(n int) *fallback.Message {
			return &fallback.Message{ID: fmt.Sprintf("$sms%d", n), Conversation: "line/15557654321", To: "+15557654321", Text: fmt.Sprintf("message %d", n), Line: "line"}
		},
		Unreachable: func() *fallback.Message {
			return &fallback.Message{ID: "$alpha", Conversation: "line/alpha_bank", To: "MyBank", Text: "hi", Line: "line"}
		},
		Delivered: func(t *testing.T, tr fallback.Transport) int {
			// The transport queues; the line's outbox sends. Wait until the
			// queue is empty, then count what the modem decoded.
			c := tr.(*trConforming)
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if n, err := c.line.QueueLength(context.Background()); err == nil && n == 0 {
					break
				}
			}
			return len(c.sim.Sent())
		},
	})
}

// trConforming keeps the simulator next to the transport for Delivered.
type trConforming struct {
	*Transport
	sim  *modemsim.Sim
	line *Line
}

// trLine starts a simulated modem and an open Line on it, on a fresh
// database; both are closed when t ends.
func trLine(t *testing.T) (*modemsim.Sim, *Line) {
	t.Helper()
	sim, err := modemsim.Start(modemsim.Options{Echo: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	db, err := dbutil.NewWithDialect("file:"+filepath.Join(t.TempDir(), "sms.db")+"?_txlock=immediate", "sqlite3-fk-wal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := Upgrade(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	line := NewLine(Config{ID: "sim", Device: sim.Path(), CommandTimeout: 5 * time.Second, SendTimeout: 10 * time.Second, MaxParts: 10},
		db, zaptest.NewLogger(t), func(context.Context, *Message) error { return nil })
	if err := line.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = line.Close() })
	return sim, line
}

// TestTransportSendErrors: what Send refuses before touching a line, and how
// the router is told to go on.
func TestTransportSendErrors(t *testing.T) {
	tr := &Transport{LineFor: func(string) *Line { return nil }}
	for _, tc := range []struct {
		name string
		msg  *fallback.Message
		want fallback.Class
	}{
		{name: "alphanumeric contact", msg: &fallback.Message{ID: "$a", To: "MyBank", Text: "hi"}, want: fallback.ClassUnreachable},
		{name: "file", msg: &fallback.Message{ID: "$f", To: "+15557654321", File: &fallback.File{URL: "https://x/y"}}, want: fallback.ClassPermanent},
		{name: "line not logged in", msg: &fallback.Message{ID: "$l", To: "72404", Text: "hi"}, want: fallback.ClassTemporary},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcpt, err := tr.Send(context.Background(), tc.msg)
			if got := fallback.Classify(err); got != tc.want || rcpt != nil {
				t.Fatalf("Send = %v, %v (class %s); want class %s", rcpt, err, got, tc.want)
			}
		})
	}
}

// TestTransportFilesAsMMS: with an MMS hook, a file with its bytes goes to
// the hook (the hook's error class stands); without bytes or hook it is
// refused as before.
func TestTransportFilesAsMMS(t *testing.T) {
	var got []*fallback.Message
	fail := error(nil)
	tr := &Transport{LineFor: func(string) *Line { return nil }, MMS: func(_ context.Context, msg *fallback.Message) error {
		got = append(got, msg)
		return fail
	}}
	msg := &fallback.Message{ID: "$m", To: "+15557654321", Text: "cat.jpg", File: &fallback.File{Name: "cat.jpg", Data: []byte{1}}}
	rcpt, err := tr.Send(context.Background(), msg)
	if err != nil || rcpt.Route != fallback.RouteSMS || len(got) != 1 || got[0] != msg {
		t.Fatalf("Send = %v, %v; hook saw %d", rcpt, err, len(got))
	}
	fail = fallback.Temporary(errors.New("database locked"))
	if _, err := tr.Send(context.Background(), msg); fallback.Classify(err) != fallback.ClassTemporary {
		t.Errorf("hook error %v, want temporary", err)
	}
	if _, err := tr.Send(context.Background(), &fallback.Message{ID: "$u", To: "+15557654321", File: &fallback.File{URL: "https://x/y"}}); fallback.Classify(err) != fallback.ClassPermanent || len(got) != 2 {
		t.Errorf("file without bytes: %v (hook calls %d)", err, len(got))
	}
}
