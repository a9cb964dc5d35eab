// Package dendritetest runs a real Dendrite homeserver (github.com/matrix-org/dendrite
// v0.13.8, Apache-2.0) on 127.0.0.1 for integration tests and the no-hardware trial.
//
// Ensure installs the Dendrite tools into a cache folder once (go install from the module
// proxy, about two minutes cold on two cores); Start generates a signing key and a config in
// a private folder, starts Dendrite on a free loopback port and waits until the client API
// answers. Dendrite reads appservice registrations only at start, so a test that needs the
// bridge's registration writes it first and passes its path in Options, or calls
// SetRegistrations and Restart.
//
// Dendrite advertises Matrix spec versions up to v1.2 only: a bridgev2 bridge must run with
// IgnoreUnsupportedServer (--ignore-unsupported-server) against it, and it never pushes
// typing or read-receipt EDUs to appservices.
package dendritetest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Version is the Dendrite release the harness installs and expects.
const Version = "v0.13.8"

// Module is the Go module Dendrite is installed from. It is the Apache-2.0 matrix-org module,
// never the AGPL element-hq fork.
const Module = "github.com/matrix-org/dendrite"

// EnvBinDir names the environment variable that overrides the folder holding the Dendrite
// binaries. When unset, the folder is <user cache dir>/bubbled/dendrite-v0.13.8/bin.
const EnvBinDir = "BUBBLED_DENDRITE_BIN"

// EnvSkip names the environment variable that, set to "1", makes tests skip instead of
// installing Dendrite when it is not installed yet.
const EnvSkip = "BUBBLED_SKIP_DENDRITE"

// Tools lists the Dendrite commands Ensure installs, in install order. The server binary comes
// last, so that its presence means the whole set is in place.
var Tools = []string{"generate-keys", "generate-config", "create-account", "dendrite"}

// DefaultBinDir returns the folder Ensure uses: $BUBBLED_DENDRITE_BIN when set, else
// $XDG_CACHE_HOME/bubbled/dendrite-v0.13.8/bin, else ~/.cache/bubbled/dendrite-v0.13.8/bin.
func DefaultBinDir() (string, error) {
	return binDirFrom(os.Getenv)
}

func binDirFrom(getenv func(string) string) (string, error) {
	if dir := getenv(EnvBinDir); dir != "" {
		return filepath.Abs(dir)
	}
	cache := getenv("XDG_CACHE_HOME")
	if cache == "" || !filepath.IsAbs(cache) {
		home := getenv("HOME")
		if home == "" {
			return "", fmt.Errorf("find a cache folder for Dendrite: neither XDG_CACHE_HOME nor HOME is set; set %s to a folder for the Dendrite binaries", EnvBinDir)
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "bubbled", "dendrite-"+Version, "bin"), nil
}

// Installed reports whether every tool in Tools is present as an executable file in dir.
func Installed(dir string) bool {
	for _, tool := range Tools {
		info, err := os.Stat(filepath.Join(dir, tool))
		if err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// Ensure returns the folder holding the Dendrite binaries (see DefaultBinDir), installing them
// first when missing. It is safe to call from many processes at once: one installs, the others
// wait on a lock file in the folder. It is (&Installer{}).Ensure(ctx).
func Ensure(ctx context.Context) (binDir string, err error) {
	return (&Installer{}).Ensure(ctx)
}

// Installer installs the Dendrite tools with the go command. The zero value uses DefaultBinDir,
// the go command on PATH and no logging. An Installer may be used from several goroutines.
type Installer struct {
	// BinDir is the folder for the binaries; "" means DefaultBinDir.
	BinDir string
	// GoCmd is the go command to run; "" means "go" from PATH, else $GOROOT/bin/go.
	GoCmd string
	// Log receives progress messages; nil means none.
	Log *zap.Logger
}

// verified remembers folders whose dendrite binary reported the expected version, so that the
// version check runs once per process and folder.
var verified sync.Map // string (folder) -> struct{}

// Ensure returns the binary folder, installing the tools when any is missing. The install runs
// `go install <Module>/cmd/<tool>@<Version>` for every tool into a staging folder inside the bin
// folder and renames the results into place, so a folder never holds a half-written binary.
// When the tools are present, Ensure checks that `dendrite -version` reports Version.
func (in *Installer) Ensure(ctx context.Context) (string, error) {
	log := in.Log
	if log == nil {
		log = zap.NewNop()
	}
	dir := in.BinDir
	if dir == "" {
		var err error
		if dir, err = DefaultBinDir(); err != nil {
			return "", err
		}
	}
	if !Installed(dir) {
		if err := in.installLocked(ctx, log, dir); err != nil {
			return "", err
		}
	}
	if _, ok := verified.Load(dir); ok {
		return dir, nil
	}
	if err := checkVersion(ctx, dir); err != nil {
		return "", err
	}
	verified.Store(dir, struct{}{})
	return dir, nil
}

// installLocked takes the install lock and installs unless another process finished first.
func (in *Installer) installLocked(ctx context.Context, log *zap.Logger, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create Dendrite bin folder: %w; set %s to a writable folder", err, EnvBinDir)
	}
	lockPath := filepath.Join(dir, ".install.lock")
	unlock, err := lockFile(ctx, lockPath, func() {
		log.Info("waiting for another process installing Dendrite", zap.String("lock", lockPath))
	})
	if err != nil {
		return fmt.Errorf("lock Dendrite install: %w", err)
	}
	defer unlock()
	if Installed(dir) {
		return nil
	}
	return in.install(ctx, log, dir)
}

func (in *Installer) install(ctx context.Context, log *zap.Logger, dir string) error {
	goCmd, err := in.goCommand()
	if err != nil {
		return err
	}
	staging, err := os.MkdirTemp(dir, ".staging-")
	if err != nil {
		return fmt.Errorf("create Dendrite staging folder: %w", err)
	}
	defer os.RemoveAll(staging)
	// An empty working folder keeps any go.mod or go.work around the caller out of the build.
	work, err := os.MkdirTemp("", "dendrite-install-")
	if err != nil {
		return fmt.Errorf("create Dendrite install work folder: %w", err)
	}
	defer os.RemoveAll(work)

	args := []string{"install"}
	for _, tool := range Tools {
		args = append(args, Module+"/cmd/"+tool+"@"+Version)
	}
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = work
	// cmd.Env keeps the last of duplicate keys, so these override the caller's environment.
	// Dendrite stores everything in SQLite through mattn/go-sqlite3, which needs cgo.
	cmd.Env = append(os.Environ(), "GOBIN="+staging, "GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=1")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	log.Info("installing Dendrite", zap.String("version", Version), zap.String("bin_dir", dir))
	start := time.Now()
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("install Dendrite %s: %w", Version, ctxErr)
		}
		return fmt.Errorf("install Dendrite %s with %q: %w; the Go module proxy and a C compiler (cgo) are needed, or install the tools yourself and set %s\n%s",
			Version, strings.Join(cmd.Args, " "), err, EnvBinDir, tail(out.Bytes(), 30))
	}
	for _, tool := range Tools {
		if err := os.Rename(filepath.Join(staging, tool), filepath.Join(dir, tool)); err != nil {
			return fmt.Errorf("move installed Dendrite tool %s into %s: %w", tool, dir, err)
		}
	}
	log.Info("installed Dendrite", zap.String("version", Version), zap.Duration("took", time.Since(start)))
	return nil
}

func (in *Installer) goCommand() (string, error) {
	if in.GoCmd != "" {
		return in.GoCmd, nil
	}
	if path, err := exec.LookPath("go"); err == nil {
		return path, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		path := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("find the go command to install Dendrite: not on PATH and GOROOT unset; install Go or set %s to a folder with the Dendrite %s tools", EnvBinDir, Version)
}

// checkVersion runs `dendrite -version` and compares it with Version.
func checkVersion(ctx context.Context, dir string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	bin := filepath.Join(dir, "dendrite")
	out, err := exec.CommandContext(ctx, bin, "-version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("run %s -version: %w\n%s", bin, err, tail(out, 10))
	}
	got := strings.TrimSpace(string(out))
	if got != strings.TrimPrefix(Version, "v") {
		return fmt.Errorf("dendrite in %s reports version %q, want %s: delete the folder's binaries so they are reinstalled, or set %s to another folder", dir, got, Version, EnvBinDir)
	}
	return nil
}

// tail returns at most the last n lines of b, for error messages.
func tail(b []byte, n int) string {
	s := strings.TrimRight(string(b), "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
