package sms

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq" // Postgres driver for BUBBLED_TEST_POSTGRES
	"go.mau.fi/util/dbutil"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
	"github.com/bubbled/bubbled/connectors/sms/pdu"
)

// storeDBs returns the databases the store tests run on: SQLite always,
// Postgres when BUBBLED_TEST_POSTGRES holds a DSN (tables are dropped first).
func storeDBs(t *testing.T) map[string]*dbutil.Database {
	t.Helper()
	dbs := map[string]*dbutil.Database{"sqlite": testDB(t)}
	dsn := os.Getenv("BUBBLED_TEST_POSTGRES")
	if dsn == "" {
		return dbs
	}
	db, err := dbutil.NewWithDialect(dsn, "postgres")
	if err != nil {
		t.Fatalf("open Postgres: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx := context.Background()
	for _, tbl := range []string{"counter", "part", "part_seen", "inbox", "bad_pdu", "version"} {
		if _, err := db.Exec(ctx, "DROP TABLE IF EXISTS bubbled_sms_"+tbl); err != nil {
			t.Fatal(err)
		}
	}
	if err := Upgrade(ctx, db); err != nil {
		t.Fatalf("upgrade Postgres: %v", err)
	}
	dbs["postgres"] = db
	return dbs
}

// deliverPDUs returns the SMS-DELIVER PDUs the simulated network makes for
// a message, in part order.
func deliverPDUs(t *testing.T, from, text string) []string {
	t.Helper()
	sim := startSim(t, modemsim.Options{})
	if err := sim.StoreOnly(from, text); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range sim.Messages() {
		out = append(out, m.PDU)
	}
	return out
}

func decode(t *testing.T, h string) *pdu.Message {
	t.Helper()
	m, err := pdu.Decode(h, true)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestUpgradeIdempotent(t *testing.T) {
	for name, db := range storeDBs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			if err := Upgrade(ctx, db); err != nil {
				t.Fatalf("second Upgrade: %v", err)
			}
			var v int
			if err := db.QueryRow(ctx, "SELECT version FROM bubbled_sms_version").Scan(&v); err != nil || v != len(upgradeTable) {
				t.Errorf("version = %d, %v", v, err)
			}
		})
	}
}

func TestStore(t *testing.T) {
	long := deliverPDUs(t, alice, longUCS2)
	if len(long) != 3 {
		t.Fatalf("%d parts", len(long))
	}
	single := deliverPDUs(t, bob, "single")[0]
	other := deliverPDUs(t, alice, longGSM) // a different message, maybe the same ref

	for name, db := range storeDBs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			now := time.Unix(1_700_000_000, 0)
			s := &store{db: db, line: "l1", now: func() time.Time { return now }}

			t.Run("parts in any order, duplicates", func(t *testing.T) {
				var id string
				for i, h := range []string{long[2], long[0], long[2], long[1]} {
					res, err := s.saveDeliver(ctx, decode(t, h), h)
					if err != nil {
						t.Fatalf("part %d: %v", i, err)
					}
					if i < 3 && res.id != "" {
						t.Fatalf("complete after %d parts", i+1)
					}
					if i == 2 && !res.duplicate {
						t.Error("repeated part not recognised")
					}
					id = res.id
				}
				if id == "" {
					t.Fatal("not complete after 3 parts")
				}
				msgs, err := s.undelivered(ctx)
				if err != nil || len(msgs) != 1 || msgs[0].Text != longUCS2 || msgs[0].Parts != 3 || msgs[0].ID != id {
					t.Fatalf("undelivered = %+v, %v", msgs, err)
				}
				// A part read again after the join is recognised.
				res, err := s.saveDeliver(ctx, decode(t, long[1]), long[1])
				if err != nil || !res.duplicate || res.id != id {
					t.Errorf("re-read part: %+v, %v", res, err)
				}
				var n int
				if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM bubbled_sms_part").Scan(&n); err != nil || n != 0 {
					t.Errorf("parts left: %d, %v", n, err)
				}
			})
			t.Run("single, stable ID", func(t *testing.T) {
				a, err := s.saveDeliver(ctx, decode(t, single), single)
				if err != nil || a.duplicate || a.id == "" {
					t.Fatalf("first: %+v, %v", a, err)
				}
				b, err := s.saveDeliver(ctx, decode(t, single), strings.ToLower(single))
				if err != nil || !b.duplicate || b.id != a.id {
					t.Fatalf("second: %+v, %v (first %s)", b, err, a.id)
				}
				other := &store{db: db, line: "l2", now: s.now}
				c, err := other.saveDeliver(ctx, decode(t, single), single)
				if err != nil || c.duplicate || c.id == a.id {
					t.Errorf("other line: %+v, %v", c, err)
				}
			})
			t.Run("delivered in order", func(t *testing.T) {
				msgs, err := s.undelivered(ctx)
				if err != nil || len(msgs) != 2 || msgs[0].Text != longUCS2 || msgs[1].Text != "single" {
					t.Fatalf("undelivered = %+v, %v", msgs, err)
				}
				if err := s.markDelivered(ctx, msgs[0].ID); err != nil {
					t.Fatal(err)
				}
				msgs, _ = s.undelivered(ctx)
				if len(msgs) != 1 || msgs[0].Text != "single" {
					t.Errorf("after mark: %+v", msgs)
				}
				if err := s.markDelivered(ctx, msgs[0].ID); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("collision", func(t *testing.T) {
				m0 := decode(t, other[0])
				if _, err := s.saveDeliver(ctx, m0, other[0]); err != nil {
					t.Fatal(err)
				}
				// Another PDU claiming the same slot.
				forged := decode(t, other[1])
				c := *m0.Concat
				forged.Concat = &c
				_, err := s.saveDeliver(ctx, forged, other[1])
				if !errors.Is(err, errConcatCollision) {
					t.Errorf("err = %v, want errConcatCollision", err)
				}
			})
			t.Run("stale group flushed with gaps", func(t *testing.T) {
				now = now.Add(25 * time.Hour)
				ids, err := s.flushStale(ctx, now.Add(-24*time.Hour))
				if err != nil || len(ids) != 1 {
					t.Fatalf("flushStale = %v, %v", ids, err)
				}
				msgs, err := s.undelivered(ctx)
				if err != nil || len(msgs) != 1 {
					t.Fatalf("undelivered = %+v, %v", msgs, err)
				}
				total := len(other)
				var wantMissing []int
				for seq := 2; seq <= total; seq++ {
					wantMissing = append(wantMissing, seq)
				}
				if !strings.HasSuffix(msgs[0].Text, fmt.Sprintf("[part %d of %d missing]", total, total)) || msgs[0].Parts != 1 ||
					!slices.Equal(msgs[0].Missing, wantMissing) {
					t.Errorf("partial message = %+v, want parts %v marked missing", msgs[0], wantMissing)
				}
			})
			t.Run("concat counter", func(t *testing.T) {
				a, err := s.nextRef(ctx)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := s.nextRef(ctx)
				c, _ := (&store{db: db, line: "l1", now: s.now}).nextRef(ctx)
				if b != a+1 || c != b+1 {
					t.Errorf("refs %d %d %d", a, b, c)
				}
			})
			t.Run("bad PDU", func(t *testing.T) {
				for range 2 {
					if err := s.saveBad(ctx, "cmgr", 3, "0011", "decode: short"); err != nil {
						t.Fatal(err)
					}
				}
				var n int
				if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM bubbled_sms_bad_pdu WHERE line_id='l1'").Scan(&n); err != nil || n != 1 {
					t.Errorf("bad rows = %d, %v; want the PDU stored once", n, err)
				}
			})
			t.Run("prune", func(t *testing.T) {
				if err := s.prune(ctx, now.Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
				var n int
				if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM bubbled_sms_inbox WHERE line_id='l1' AND delivered=$1", true).Scan(&n); err != nil || n != 0 {
					t.Errorf("delivered rows left = %d, %v", n, err)
				}
			})
		})
	}
}

// TestJoinPartial: every missing part is marked where it belongs and named.
func TestJoinPartial(t *testing.T) {
	part := func(seq int, text string) storedPart { return storedPart{seq: seq, msg: &pdu.Message{Text: text}} }
	cases := []struct {
		name    string
		parts   []storedPart
		total   int
		want    string
		missing []int
	}{
		{"middle", []storedPart{part(1, "a"), part(3, "c")}, 3, "a[part 2 of 3 missing]c", []int{2}},
		{"first and last", []storedPart{part(2, "b")}, 3, "[part 1 of 3 missing]b[part 3 of 3 missing]", []int{1, 3}},
		{"two in a row", []storedPart{part(1, "a"), part(4, "d")}, 4, "a[part 2 of 4 missing][part 3 of 4 missing]d", []int{2, 3}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text, missing := joinPartial(c.parts, c.total)
			if text != c.want || !slices.Equal(missing, c.missing) {
				t.Errorf("joinPartial = %q %v, want %q %v", text, missing, c.want, c.missing)
			}
			if got := splitInts(joinInts(missing)); !slices.Equal(got, c.missing) {
				t.Errorf("stored missing parts read back as %v", got)
			}
		})
	}
}

// TestCountersNeverRepeat: counter values come from blocks reserved in the
// database; two stores of one line (a Line reopened while the old one
// closes), a rolled-back transaction, a refilled block and a store that
// never reserved still never hand out one value twice, and each store's
// values only grow.
func TestCountersNeverRepeat(t *testing.T) {
	for name, db := range storeDBs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			seen := map[int64]string{}
			last := map[string]int64{}
			take := func(s *store, who string, rollback bool) {
				t.Helper()
				if err := s.reserve(ctx, "outcome", 1); err != nil {
					t.Fatal(err)
				}
				errRollback := errors.New("rollback")
				err := db.DoTxn(ctx, nil, func(ctx context.Context) error {
					v, err := s.nextSeq(ctx, "outcome")
					if err != nil {
						return err
					}
					if prev, dup := seen[v]; dup {
						t.Fatalf("%s got %d, already handed to %s", who, v, prev)
					}
					seen[v] = who
					if v <= last[who] {
						t.Fatalf("%s got %d after %d", who, v, last[who])
					}
					last[who] = v
					if rollback {
						return errRollback
					}
					return nil
				})
				if err != nil && !errors.Is(err, errRollback) {
					t.Fatal(err)
				}
			}
			s1 := &store{db: db, line: "l1", now: time.Now}
			s2 := &store{db: db, line: "l1", now: time.Now}
			for i := range seqBlockSize + 10 { // s1 refills its block once
				take(s1, "s1", i%7 == 0)
				if i%50 == 0 {
					take(s2, "s2", false)
				}
			}
			// A store that never reserved takes from the database itself.
			s3 := &store{db: db, line: "l1", now: time.Now}
			err := db.DoTxn(ctx, nil, func(ctx context.Context) error {
				v, err := s3.nextSeq(ctx, "outcome")
				if prev, dup := seen[v]; err == nil && dup {
					t.Errorf("unreserved store got %d, already handed to %s", v, prev)
				}
				seen[v] = "s3"
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			take(s1, "s1", false)
			if len(seen) != seqBlockSize+10+7+1 {
				t.Errorf("%d values handed, want %d", len(seen), seqBlockSize+10+7+1)
			}
		})
	}
}

// TestCounterReserveWhileATransactionTakesValues: a reserve waiting for the
// database (here its only connection, held by a transaction) must not hold
// the counters' lock that the transaction needs to take its value; it
// did, and a status report arriving during an enqueue deadlocked the line.
func TestCounterReserveWhileATransactionTakesValues(t *testing.T) {
	db := testDB(t) // one connection
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := &store{db: db, line: "l1", now: time.Now}
	reserved := make(chan error, 1)
	err := db.DoTxn(ctx, nil, func(txn context.Context) error {
		go func() { reserved <- s.reserve(ctx, "outcome", 1) }() // outside the transaction
		time.Sleep(100 * time.Millisecond)                       // the reserve now waits for the connection
		_, err := s.nextSeq(txn, "outcome")
		return err
	})
	if err != nil {
		t.Fatalf("the transaction taking a value: %v", err)
	}
	if err := <-reserved; err != nil {
		t.Fatalf("the reserve: %v", err)
	}
}
