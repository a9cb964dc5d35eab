package dendritetest

import (
	"context"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// installTimeout bounds an install started from a test; a cold one takes about two minutes on
// two cores.
const installTimeout = 15 * time.Minute

// EnsureT returns the Dendrite bin folder for a test. When the tools are missing it skips the
// test if BUBBLED_SKIP_DENDRITE=1, and otherwise installs them (logging to t).
func EnsureT(t testing.TB) string {
	t.Helper()
	dir, err := DefaultBinDir()
	if err != nil {
		t.Fatal(err)
	}
	if !Installed(dir) && os.Getenv(EnvSkip) == "1" {
		t.Skipf("Dendrite %s is not installed in %s and %s=1; run go run ./bridge/dendritetest/cmd/ensure-dendrite", Version, dir, EnvSkip)
	}
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	dir, err = (&Installer{BinDir: dir, Log: zaptest.NewLogger(t)}).Ensure(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// StartT starts a Dendrite for a test (see EnsureT for when it skips). opts.BinDir defaults to
// EnsureT's folder and opts.Dir to a folder under t.TempDir(). The server is stopped when the
// test ends; the test fails if Dendrite had crashed or had to be killed, and Dendrite's log is
// attached to the output of a failed test.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.BinDir == "" {
		opts.BinDir = EnsureT(t)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultStartTimeout+10*time.Second)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if err := s.Err(); err != nil {
			t.Errorf("Dendrite: %v", err)
		}
		if t.Failed() {
			if log, err := os.ReadFile(s.LogPath); err == nil {
				t.Logf("Dendrite log %s:\n%s", s.LogPath, tail(log, 60))
			}
		}
	})
	return s
}
