package bridge_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"
)

// killBubbled kills the daemon with SIGKILL, as a power cut or the OOM killer would.
func (e *env) killBubbled() {
	e.t.Helper()
	if e.proc == nil {
		return
	}
	_ = e.proc.Process.Kill()
	<-e.procDone
	e.proc = nil
}

// sortedKeys lists the message indices a kill followed.
func sortedKeys(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestCrashDurability sends messages from Matrix while bubbled is killed
// with SIGKILL at random points and restarted. Every message must reach the
// modem; a message may be sent twice only for a crash between the modem's
// answer and bubbled's write (at most one per crash). Figures are logged.
// BUBBLED_CRASH_FULL=1 runs the full 1,000 messages and 8 kills.
func TestCrashDurability(t *testing.T) {
	n, kills := 120, 3
	if os.Getenv("BUBBLED_CRASH_FULL") == "1" {
		n, kills = 1000, 8
	}
	e := newEnv(t)
	alice := e.newUser("alice")
	e.login(alice)
	ghost := ghostMXID(contactNumber)
	if err := e.sim.Deliver(contactNumber, "start"); err != nil {
		t.Fatal(err)
	}
	_, portal := alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == "start" })

	killAt := map[int]bool{}
	for len(killAt) < kills {
		killAt[5+rand.IntN(n-10)] = true
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	for i := 0; i < n; i++ {
		if _, err := alice.cli.SendText(ctx, portal, fmt.Sprintf("crash test message %04d", i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if killAt[i] {
			e.killBubbled()
			time.Sleep(time.Duration(rand.IntN(500)) * time.Millisecond)
			e.startBubbled()
		}
	}

	var got map[string]int
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got = map[string]int{}
		for _, s := range e.sim.Sent() {
			got[s.Text]++
		}
		var missing []int
		for i := 0; i < n; i++ {
			if got[fmt.Sprintf("crash test message %04d", i)] == 0 {
				missing = append(missing, i)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages never reached the modem after %d kills (missing %v, kills after %v); log:\n%s",
				len(missing), n, kills, missing, sortedKeys(killAt), e.tail())
		}
		time.Sleep(500 * time.Millisecond)
	}
	dups := 0
	for i := 0; i < n; i++ {
		if c := got[fmt.Sprintf("crash test message %04d", i)]; c > 1 {
			dups += c - 1
		}
	}
	t.Logf("crash test: %d messages, %d SIGKILLs, 0 lost, %d sent twice, %s", n, kills, dups, time.Since(start).Round(time.Millisecond))
	if dups > kills {
		t.Errorf("%d messages were sent twice, more than one per crash (%d)", dups, kills)
	}
}
