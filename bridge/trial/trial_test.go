package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bubbled/bubbled/bridge/dendritetest"
)

// trialTimeout bounds one trial run in the test: building bubbled (cold: minutes, with a
// race-instrumented suite building beside it), starting everything, the smoke test.
const trialTimeout = 10 * time.Minute

// testWriter forwards the trial's output to the test log, line by line.
type testWriter struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		w.t.Log(strings.TrimRight(line, "\n"))
	}
}

// TestSmokeAndResume runs the README's first command in smoke mode twice in one folder: the
// first run registers the user, opens the management room, logs the line in and round-trips
// an SMS; the second must resume with the same user, rooms, ports and line login.
func TestSmokeAndResume(t *testing.T) {
	if os.Getenv(dendritetest.EnvSkip) == "1" {
		t.Skipf("%s=1: skipping the trial's smoke test against Dendrite", dendritetest.EnvSkip)
	}
	binDir := dendritetest.EnsureT(t)
	// Another bubbled (or trial) on this machine holds the metrics port:
	// the trial's bubbled must still start (it failed with "address already
	// in use" and exit status 15).
	if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", defaultMetricsPort)); err == nil {
		t.Cleanup(func() { _ = l.Close() })
	}
	dir := t.TempDir()
	opts := Options{Dir: dir, Smoke: true, DendriteBin: binDir, Out: &testWriter{t: t}}

	run := func(name string) *Report {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), trialTimeout)
		defer cancel()
		t.Logf("--- %s trial run", name)
		rep, err := Run(ctx, opts)
		if err != nil {
			t.Fatalf("%s trial run: %v", name, err)
		}
		if rep.Smoke == nil || !rep.Smoke.Encrypted || rep.Smoke.Portal == "" {
			t.Fatalf("%s trial run: smoke result %+v, want an encrypted round trip in a portal", name, rep.Smoke)
		}
		return rep
	}

	first := run("first")
	if !first.Registered || !first.Login.RoomCreated || !first.Login.LoggedInNow {
		t.Errorf("first run: registered=%v room_created=%v logged_in_now=%v, want all true",
			first.Registered, first.Login.RoomCreated, first.Login.LoggedInNow)
	}
	if !strings.Contains(first.Login.BotSaid, "Logged in") {
		t.Errorf("first run: the bot answered `login` with %q, want it to say Logged in", first.Login.BotSaid)
	}

	second := run("second")
	if second.Registered || second.Login.RoomCreated || second.Login.LoggedInNow {
		t.Errorf("second run: registered=%v room_created=%v logged_in_now=%v, want all false (resume)",
			second.Registered, second.Login.RoomCreated, second.Login.LoggedInNow)
	}
	for _, c := range []struct{ what, first, second string }{
		{"user", string(first.UserID), string(second.UserID)},
		{"password", first.Password, second.Password},
		{"homeserver URL", first.HomeserverURL, second.HomeserverURL},
		{"control API URL", first.ControlURL, second.ControlURL},
		{"management room", string(first.Login.Room), string(second.Login.Room)},
		{"portal", string(first.Smoke.Portal), string(second.Smoke.Portal)},
	} {
		if c.first != c.second {
			t.Errorf("the second run's %s is %q, want the first run's %q", c.what, c.second, c.first)
		}
	}
	if !strings.Contains(second.Login.BotSaid, "15550001111") {
		t.Errorf("second run: list-logins answered %q, want the line 15550001111", second.Login.BotSaid)
	}
	st, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("trial.json has mode %v, want 0600: it holds the password", info.Mode().Perm())
	}
	if st.ManagementRoom != string(first.Login.Room) || st.Password != first.Password {
		t.Errorf("trial.json holds room %q password set=%v, want %q and the printed password", st.ManagementRoom, st.Password != "", first.Login.Room)
	}
}
