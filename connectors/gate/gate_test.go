package gate_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream" // registers the sqlite3-fk-wal driver

	"github.com/bubbled/bubbled/connectors/gate"
)

func openStore(t *testing.T, path string) *gate.Store {
	t.Helper()
	db, err := dbutil.NewWithDialect("file:"+path+"?_txlock=immediate", "sqlite3-fk-wal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := gate.Upgrade(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return gate.NewStore(db)
}

func TestDecide(t *testing.T) {
	ctx := context.Background()
	store := openStore(t, filepath.Join(t.TempDir(), "g.db"))
	if err := store.SetState(ctx, "@alice:x", "15550000003", gate.StateAccepted); err != nil {
		t.Fatal(err)
	}
	if err := store.SetState(ctx, "@alice:x", "15550000004", gate.StateBlocked); err != nil {
		t.Fatal(err)
	}
	stranger := gate.Sender{Key: "15550000009"}
	cases := []struct {
		name   string
		cfg    gate.Config
		owner  string
		sender gate.Sender
		want   gate.Verdict
	}{
		{"room policy delivers strangers", gate.Config{Policy: gate.PolicyRoom}, "@alice:x", stranger, gate.Deliver},
		{"quarantine holds strangers", gate.Config{Policy: gate.PolicyQuarantine}, "@alice:x", stranger, gate.Quarantine},
		{"drop drops strangers", gate.Config{Policy: gate.PolicyDrop}, "@alice:x", stranger, gate.Drop},
		{"contacts pass", gate.Config{Policy: gate.PolicyQuarantine}, "@alice:x", gate.Sender{Key: "15550000001", InContacts: true}, gate.Deliver},
		{"an existing room passes", gate.Config{Policy: gate.PolicyDrop}, "@alice:x", gate.Sender{Key: "15550000002", HasRoom: true}, gate.Deliver},
		{"accepted by the owner passes", gate.Config{Policy: gate.PolicyQuarantine}, "@alice:x", gate.Sender{Key: "15550000003"}, gate.Deliver},
		{"accepted by another owner does not", gate.Config{Policy: gate.PolicyQuarantine}, "@bob:x", gate.Sender{Key: "15550000003"}, gate.Quarantine},
		{"blocked by the owner, even with a room", gate.Config{Policy: gate.PolicyRoom}, "@alice:x", gate.Sender{Key: "15550000004", HasRoom: true, InContacts: true}, gate.Blocked},
		{"blocked by another owner is not", gate.Config{Policy: gate.PolicyRoom}, "@bob:x", gate.Sender{Key: "15550000004"}, gate.Deliver},
		{"blocked in the config for everyone", gate.Config{Policy: gate.PolicyRoom, Blocked: []string{"15550000005"}}, "@bob:x", gate.Sender{Key: "15550000005"}, gate.Blocked},
		{"codes room for short codes", gate.Config{Policy: gate.PolicyRoom, Codes: true}, "@alice:x", gate.Sender{Key: "local_72404", Kind: gate.ShortCode}, gate.Codes},
		{"codes room for named senders", gate.Config{Policy: gate.PolicyQuarantine, Codes: true}, "@alice:x", gate.Sender{Key: "alpha_bank", Kind: gate.Alpha}, gate.Codes},
		{"named senders are strangers without a codes room", gate.Config{Policy: gate.PolicyQuarantine}, "@alice:x", gate.Sender{Key: "alpha_bank", Kind: gate.Alpha}, gate.Quarantine},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, err := gate.New(tc.cfg, store)
			if err != nil {
				t.Fatal(err)
			}
			got, err := g.Decide(ctx, tc.owner, tc.sender)
			if err != nil || got != tc.want {
				t.Errorf("Decide = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	if _, err := gate.New(gate.Config{Policy: "maybe"}, store); err == nil {
		t.Errorf("an unknown policy was accepted")
	}
}

// TestHeldSurvivesRestart: quarantined messages are kept per line, in order,
// once each, across a reopen of the database.
func TestHeldSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "g.db")
	s := openStore(t, path)
	t0 := time.UnixMilli(1_700_000_000_000)
	for _, h := range []gate.Held{
		{Line: "L1", ID: "b", Sender: "15550000009", Body: "second", Parts: 1, At: t0.Add(time.Second)},
		{Line: "L1", ID: "a", Sender: "15550000009", Body: "first", Parts: 2, At: t0},
		{Line: "L1", ID: "a", Sender: "15550000009", Body: "first again", Parts: 2, At: t0},
		{Line: "L2", ID: "c", Sender: "15550000009", Body: "other line", Parts: 1, At: t0},
	} {
		if err := s.Hold(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	s2 := openStore(t, path)
	got, err := s2.Held(ctx, "L1", "15550000009")
	if err != nil || len(got) != 2 || got[0].Body != "first" || got[0].Parts != 2 || got[1].Body != "second" || !got[0].At.Equal(t0) {
		t.Fatalf("Held after reopen = %+v, %v", got, err)
	}
	if err := s2.Release(ctx, "L1", "15550000009"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s2.Held(ctx, "L1", "15550000009"); len(got) != 0 {
		t.Errorf("released messages are still held: %+v", got)
	}
	if got, _ := s2.Held(ctx, "L2", "15550000009"); len(got) != 1 {
		t.Errorf("releasing on L1 touched L2: %+v", got)
	}
}
