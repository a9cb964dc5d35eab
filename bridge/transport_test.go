package bridge

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream" // sqlite3-fk-wal
	"go.uber.org/zap/zaptest"

	"github.com/bubbled/bubbled/connectors/rcs"
	"github.com/bubbled/bubbled/connectors/rcs/rbmfake"
	"github.com/bubbled/bubbled/connectors/sms"
	"github.com/bubbled/bubbled/connectors/sms/modemsim"
	"github.com/bubbled/bubbled/fallback"
	"github.com/bubbled/bubbled/fallback/fallbacktest"
)

// The SMS and RCS transports pass the same conformance suite, each against
// its real backend: a Line on the simulated modem over a pty, and the RBM
// provider over HTTP to the in-repo RBM fake.

func TestSMSTransportConformance(t *testing.T) {
	fallbacktest.Conformance(t, fallbacktest.Harness{
		New: func(t *testing.T) fallback.Transport {
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
			if err := sms.Upgrade(context.Background(), db); err != nil {
				t.Fatal(err)
			}
			line := sms.NewLine(sms.Config{ID: "sim", Device: sim.Path(), CommandTimeout: 5 * time.Second, SendTimeout: 10 * time.Second, MaxParts: 10},
				db, zaptest.NewLogger(t), func(context.Context, *sms.Message) error { return nil })
			if err := line.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = line.Close() })
			return &conformingSMS{smsTransport: &smsTransport{lineFor: func(string) *sms.Line { return line }}, sim: sim, line: line}
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
			c := tr.(*conformingSMS)
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if n, err := c.line.QueueLength(context.Background()); err == nil && n == 0 {
					break
				}
			}
			return len(c.sim.Sent())
		},
	})
}

// conformingSMS keeps the simulator next to the transport for Delivered.
type conformingSMS struct {
	*smsTransport
	sim  *modemsim.Sim
	line *sms.Line
}

func TestRCSTransportConformance(t *testing.T) {
	fallbacktest.Conformance(t, fallbacktest.Harness{
		New: func(t *testing.T) fallback.Transport {
			fake, err := rbmfake.Start(rbmfake.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(fake.Close)
			fake.SetCapabilities("+15557654321", "RICHCARD_STANDALONE")
			prov, err := rcs.NewRBM(rcs.RBMConfig{AgentID: fake.AgentID(), ServiceAccountKey: fake.ServiceAccountJSON(), BaseURL: fake.URL(), TokenURL: fake.TokenURL()})
			if err != nil {
				t.Fatal(err)
			}
			return &conformingRCS{rcsTransport: newRCSTransport(prov, time.Hour, time.Hour, time.Hour, zaptest.NewLogger(t)), fake: fake}
		},
		Message: func(n int) *fallback.Message {
			return &fallback.Message{ID: fmt.Sprintf("$rcs%d", n), Conversation: "line/15557654321", To: "+15557654321", Text: fmt.Sprintf("message %d", n)}
		},
		Unreachable: func() *fallback.Message {
			return &fallback.Message{ID: "$norcs", Conversation: "line/15550000000", To: "+15550000000", Text: "hi"}
		},
		Delivered: func(t *testing.T, tr fallback.Transport) int { return len(tr.(*conformingRCS).fake.Messages()) },
	})
}

// conformingRCS keeps the fake next to the transport for Delivered.
type conformingRCS struct {
	*rcsTransport
	fake *rbmfake.Server
}
