package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bubbled/bubbled/bridge/dendritetest"
)

// listen holds a 127.0.0.1 port for the test's lifetime and returns it.
func listen(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := dendritetest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPickPorts(t *testing.T) {
	taken := listen(t)
	free1, free2, free3 := freePort(t), freePort(t), freePort(t)
	cases := []struct {
		name  string
		st    state
		opts  Options
		check func(t *testing.T, hs, as, ctl int)
	}{
		{
			name: "free preferred ports are used",
			opts: Options{HomeserverPort: free1, AppServicePort: free2, ControlPort: free3},
			check: func(t *testing.T, hs, as, ctl int) {
				if hs != free1 || as != free2 || ctl != free3 {
					t.Errorf("got %d %d %d, want %d %d %d", hs, as, ctl, free1, free2, free3)
				}
			},
		},
		{
			name: "last run's ports win over the preferred ones",
			st:   state{HomeserverPort: free3, AppServicePort: free1, ControlPort: free2},
			opts: Options{HomeserverPort: free1, AppServicePort: free2, ControlPort: free3},
			check: func(t *testing.T, hs, as, ctl int) {
				if hs != free3 || as != free1 || ctl != free2 {
					t.Errorf("got %d %d %d, want %d %d %d", hs, as, ctl, free3, free1, free2)
				}
			},
		},
		{
			name: "a taken port is replaced by a free one",
			st:   state{HomeserverPort: taken},
			opts: Options{HomeserverPort: taken},
			check: func(t *testing.T, hs, as, ctl int) {
				if hs == taken || hs == 0 {
					t.Errorf("homeserver port %d, want a free port other than the taken %d", hs, taken)
				}
			},
		},
		{
			name: "one port is never handed out twice",
			st:   state{HomeserverPort: free1, AppServicePort: free1, ControlPort: free1},
			opts: Options{HomeserverPort: free1, AppServicePort: free1, ControlPort: free1},
			check: func(t *testing.T, hs, as, ctl int) {
				if hs != free1 || as == hs || ctl == hs || ctl == as {
					t.Errorf("got %d %d %d, want %d first and three distinct ports", hs, as, ctl, free1)
				}
			},
		},
		{
			name: "zero means any free port",
			check: func(t *testing.T, hs, as, ctl int) {
				if hs == 0 || as == 0 || ctl == 0 || hs == as || as == ctl || hs == ctl {
					t.Errorf("got %d %d %d, want three distinct ports", hs, as, ctl)
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hs, as, ctl, err := pickPorts(&c.st, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, hs, as, ctl)
		})
	}
}

func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	release, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDir(dir); err == nil || !strings.Contains(err.Error(), "another trial") {
		t.Errorf("second lock: err = %v, want 'another trial … is running'", err)
	}
	release()
	release2, err := lockDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	release2()
}

func TestStateRoundTripAndWipe(t *testing.T) {
	dir := t.TempDir()
	st, err := loadState(dir)
	if err != nil || *st != (state{}) {
		t.Fatalf("loadState on an empty folder = %+v, %v; want the zero state", st, err)
	}
	want := state{Password: "pw", PickleKey: "pk", ManagementRoom: "!r:localhost", HomeserverPort: 8008}
	if err := want.save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(dir)
	if err != nil || *got != want {
		t.Fatalf("loadState = %+v, %v; want %+v", got, err, want)
	}
	release, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := os.MkdirAll(filepath.Join(dir, dendriteDir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := wipe(dir); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != lockName {
		t.Errorf("after wipe the folder holds %v, want only %s", entries, lockName)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(dir); err == nil || !strings.Contains(err.Error(), "-fresh") {
		t.Errorf("loadState of a broken file: err = %v, want advice to use -fresh", err)
	}
}
