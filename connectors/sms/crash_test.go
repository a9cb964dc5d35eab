package sms

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// Environment of the crash test's child process.
const (
	crashChildEnv  = "BUBBLED_SMS_CRASH_CHILD"
	crashDeviceEnv = "BUBBLED_SMS_CRASH_DEVICE"
	crashDBEnv     = "BUBBLED_SMS_CRASH_DB"
	// crashFullEnv selects the heavy variant: 1,000 messages, 8 kills.
	crashFullEnv = "BUBBLED_SMS_CRASH_FULL"
)

// TestCrashChild is the child process of TestCrash: a Line with the outbox
// on the parent's simulator, running until the outbox is empty. It is
// skipped unless started by TestCrash.
func TestCrashChild(t *testing.T) {
	if os.Getenv(crashChildEnv) != "1" {
		t.Skip("run by TestCrash only")
	}
	db := openDB(t, os.Getenv(crashDBEnv))
	l := NewLine(Config{ID: "crash", Device: os.Getenv(crashDeviceEnv), CommandTimeout: 2 * time.Second,
		SendTimeout: 5 * time.Second, WatchdogInterval: -1}, db, zap.NewNop(), func(context.Context, *Message) error { return nil })
	defer l.Close()
	ctx := context.Background()
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := l.QueueLength(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCrash queues messages, kills the process sending them with SIGKILL
// at random moments several times, restarts it, and checks with the
// simulator's log that every message was sent, with at most one duplicate
// part per kill.
func TestCrash(t *testing.T) {
	if os.Getenv(crashChildEnv) == "1" {
		t.Skip("child")
	}
	n, kills, spread := 200, 3, 120
	if os.Getenv(crashFullEnv) != "" {
		n, kills, spread = 1000, 8, 350
	} else if testing.Short() {
		n, kills, spread = 60, 2, 40
	}
	start := time.Now()
	sim := startSim(t, modemsim.Options{})
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "crash.db")
	db := openDB(t, dbPath)
	l := NewLine(Config{ID: "crash", Device: sim.Path()}, db, zap.NewNop(), nil)
	ctx := testCtx(t)
	parts := 0
	for i := 0; i < n; i++ {
		text := fmt.Sprintf("message %d", i)
		if i%5 == 0 {
			text += " " + strings.Repeat("long text ", 20+i%30) // 2-3 parts
		}
		if err := l.Enqueue(ctx, OutMessage{ID: fmt.Sprint("$m", i), To: fmt.Sprintf("+1555%07d", i%17), Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	want := outboxPDUs(t, db)
	for _, c := range want {
		parts += c
	}
	_ = db.Close()

	run := func(kill time.Duration) error {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"=1", crashDeviceEnv+"="+sim.Path(), crashDBEnv+"="+dbPath)
		if testing.Verbose() {
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		if kill > 0 {
			time.Sleep(kill)
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
			return nil
		}
		return cmd.Wait()
	}
	killed := 0
	for i := 0; i < kills; i++ {
		before := len(sim.SendLog())
		// Kill while sending: after the start-up (~100 ms) at a random point.
		if err := run(time.Duration(130+rand.IntN(spread)) * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		killed++
		t.Logf("kill %d: %d AT+CMGS before it", i+1, len(sim.SendLog())-before)
	}
	if err := run(0); err != nil {
		t.Fatalf("final run: %v", err)
	}

	seen := map[string]int{}
	for _, r := range sim.SendLog() {
		if r.MR >= 0 {
			seen[r.PDU]++
		}
	}
	lost, dups := 0, 0
	for pdu := range want {
		switch c := seen[pdu]; {
		case c == 0:
			lost++
		case c > 1:
			dups += c - 1
		}
	}
	for pdu := range seen {
		if _, ok := want[pdu]; !ok {
			t.Errorf("the simulator got a PDU nobody queued: %s", pdu)
		}
	}
	t.Logf("crash test: %d messages, %d parts, %d kills, %d duplicate parts, %d lost, %s",
		n, parts, killed, dups, lost, time.Since(start).Round(time.Millisecond))
	if lost > 0 {
		t.Errorf("%d parts never sent", lost)
	}
	if dups > killed {
		t.Errorf("%d duplicate parts after %d kills, want at most one per kill", dups, killed)
	}
	db2 := openDB(t, dbPath)
	var queued int
	if err := db2.QueryRow(ctx, `SELECT COUNT(*) FROM bubbled_sms_outbox WHERE state<>'sent'`).Scan(&queued); err != nil || queued != 0 {
		t.Errorf("%d messages not sent in the database (%v)", queued, err)
	}
}

// outboxPDUs returns the queued PDUs (each once).
func outboxPDUs(t testing.TB, db *dbutil.Database) map[string]int {
	rows, err := db.Query(context.Background(), `SELECT pdu FROM bubbled_sms_outbox_part`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		out[strings.ToUpper(p)]++
	}
	return out
}
