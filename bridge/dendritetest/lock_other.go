//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package dendritetest

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"time"
)

// lockPoll is how often a waiting lockFile retries.
const lockPoll = 200 * time.Millisecond

// lockStale is the age after which a lock file left by a crashed installer is broken. A cold
// Dendrite install takes about two minutes.
const lockStale = 30 * time.Minute

// lockFile creates path exclusively (no flock on this system), waiting while it exists. It
// polls so that ctx can end the wait, and calls waiting once when someone else holds the lock.
func lockFile(ctx context.Context, path string, waiting func()) (unlock func(), err error) {
	for first := true; ; first = false {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			_ = f.Close()
			return func() { _ = os.Remove(path) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		if info, statErr := os.Stat(path); statErr == nil && time.Since(info.ModTime()) > lockStale {
			_ = os.Remove(path)
			continue
		}
		if first && waiting != nil {
			waiting()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(lockPoll):
		}
	}
}
