package dendritetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBinDirFrom(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr bool
	}{
		{
			name: "override wins",
			env:  map[string]string{EnvBinDir: "/opt/dendrite/bin", "XDG_CACHE_HOME": "/xdg", "HOME": "/home/u"},
			want: "/opt/dendrite/bin",
		},
		{
			name: "XDG cache",
			env:  map[string]string{"XDG_CACHE_HOME": "/xdg", "HOME": "/home/u"},
			want: "/xdg/bubbled/dendrite-v0.13.8/bin",
		},
		{
			name: "relative XDG cache is ignored as the XDG spec says",
			env:  map[string]string{"XDG_CACHE_HOME": "cache", "HOME": "/home/u"},
			want: "/home/u/.cache/bubbled/dendrite-v0.13.8/bin",
		},
		{
			name: "home cache",
			env:  map[string]string{"HOME": "/home/u"},
			want: "/home/u/.cache/bubbled/dendrite-v0.13.8/bin",
		},
		{
			name:    "nothing set",
			env:     map[string]string{},
			wantErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := binDirFrom(func(k string) string { return tc.env[k] })
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// writeExec writes an executable shell script.
func writeExec(t *testing.T, path, script string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestInstalled(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  bool
	}{
		{name: "empty folder", setup: func(*testing.T, string) {}, want: false},
		{
			name: "all tools",
			setup: func(t *testing.T, dir string) {
				for _, tool := range Tools {
					writeExec(t, filepath.Join(dir, tool), "exit 0\n")
				}
			},
			want: true,
		},
		{
			name: "dendrite missing",
			setup: func(t *testing.T, dir string) {
				for _, tool := range Tools[:len(Tools)-1] {
					writeExec(t, filepath.Join(dir, tool), "exit 0\n")
				}
			},
			want: false,
		},
		{
			name: "one not executable",
			setup: func(t *testing.T, dir string) {
				for _, tool := range Tools {
					writeExec(t, filepath.Join(dir, tool), "exit 0\n")
				}
				if err := os.Chmod(filepath.Join(dir, "generate-keys"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: false,
		},
		{
			name: "one is a folder",
			setup: func(t *testing.T, dir string) {
				for _, tool := range Tools[1:] {
					writeExec(t, filepath.Join(dir, tool), "exit 0\n")
				}
				if err := os.Mkdir(filepath.Join(dir, Tools[0]), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			want: false,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			if got := Installed(dir); got != tc.want {
				t.Errorf("Installed = %v, want %v", got, tc.want)
			}
		})
	}
}

// fakeGo writes a go command that logs each call and, for `install`, writes tools that answer
// -version with version into $GOBIN. It fails with exit 2 when fail is set.
func fakeGo(t *testing.T, version string, fail bool) (goCmd, callLog string) {
	t.Helper()
	dir := t.TempDir()
	callLog = filepath.Join(dir, "calls")
	goCmd = filepath.Join(dir, "go")
	var script strings.Builder
	fmt.Fprintf(&script, "echo \"$PWD|$GOBIN|$GOFLAGS|$GOWORK|$CGO_ENABLED|$*\" >> %q\n", callLog)
	if fail {
		script.WriteString("echo 'go: module lookup disabled by GOPROXY=off' >&2\nexit 2\n")
	} else {
		// Slow enough that concurrent callers really overlap.
		script.WriteString("sleep 0.5\n")
		for _, tool := range Tools {
			fmt.Fprintf(&script, "printf '#!/bin/sh\\necho %s\\n' > \"$GOBIN/%s\" && chmod 755 \"$GOBIN/%s\"\n", version, tool, tool)
		}
	}
	writeExec(t, goCmd, script.String())
	return goCmd, callLog
}

func readCalls(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(raw)), "\n")
}

func TestInstallerInstallsOnceForConcurrentCallers(t *testing.T) {
	goCmd, callLog := fakeGo(t, "0.13.8", false)
	binDir := filepath.Join(t.TempDir(), "cache", "bin")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const callers = 4
	var wg sync.WaitGroup
	errs := make([]error, callers)
	dirs := make([]string, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One Installer per caller, as separate test processes would have.
			dirs[i], errs[i] = (&Installer{BinDir: binDir, GoCmd: goCmd}).Ensure(ctx)
		}()
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if dirs[i] != binDir {
			t.Errorf("caller %d got %q, want %q", i, dirs[i], binDir)
		}
	}
	calls := readCalls(t, callLog)
	if len(calls) != 1 {
		t.Fatalf("go ran %d times, want 1: %q", len(calls), calls)
	}
	fields := strings.Split(calls[0], "|")
	wantArgs := "install github.com/matrix-org/dendrite/cmd/generate-keys@v0.13.8 github.com/matrix-org/dendrite/cmd/generate-config@v0.13.8 github.com/matrix-org/dendrite/cmd/create-account@v0.13.8 github.com/matrix-org/dendrite/cmd/dendrite@v0.13.8"
	if got := fields[5]; got != wantArgs {
		t.Errorf("go args = %q, want %q", got, wantArgs)
	}
	if pwd := fields[0]; strings.HasPrefix(pwd, binDir) || pwd == "" {
		t.Errorf("go ran in %q, want a separate empty folder", pwd)
	}
	if gobin := fields[1]; filepath.Dir(gobin) != binDir || !strings.Contains(filepath.Base(gobin), ".staging-") {
		t.Errorf("GOBIN = %q, want a staging folder inside %s", gobin, binDir)
	}
	if got := strings.Join(fields[2:5], "|"); got != "-mod=mod|off|1" {
		t.Errorf("GOFLAGS|GOWORK|CGO_ENABLED = %q, want -mod=mod|off|1", got)
	}
	if !Installed(binDir) {
		t.Error("tools not installed")
	}
	entries, err := os.ReadDir(binDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".staging-") {
			t.Errorf("staging folder %s left behind", e.Name())
		}
	}
}

func TestInstallerErrors(t *testing.T) {
	tests := []struct {
		name       string
		version    string // version the installed fake tools report
		failGo     bool
		preinstall bool // tools already there, go must not run
		wantErr    string
		wantCalls  int
		wantTools  bool
	}{
		{name: "go install fails", version: "0.13.8", failGo: true, wantErr: "module lookup disabled", wantCalls: 1},
		{name: "installed tools are another version", version: "0.14.0", wantErr: `reports version "0.14.0"`, wantCalls: 1, wantTools: true},
		{name: "present tools are another version", version: "0.12.0", preinstall: true, wantErr: `reports version "0.12.0"`, wantCalls: 0, wantTools: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			goCmd, callLog := fakeGo(t, tc.version, tc.failGo)
			binDir := t.TempDir()
			if tc.preinstall {
				for _, tool := range Tools {
					writeExec(t, filepath.Join(binDir, tool), "echo "+tc.version+"\n")
				}
			}
			_, err := (&Installer{BinDir: binDir, GoCmd: goCmd}).Ensure(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
			if got := len(readCalls(t, callLog)); got != tc.wantCalls {
				t.Errorf("go ran %d times, want %d", got, tc.wantCalls)
			}
			if got := Installed(binDir); got != tc.wantTools {
				t.Errorf("Installed = %v, want %v", got, tc.wantTools)
			}
		})
	}
}

func TestInstallerHonoursContextWhileWaitingForLock(t *testing.T) {
	binDir := t.TempDir()
	unlock, err := lockFile(context.Background(), filepath.Join(binDir, ".install.lock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	goCmd, callLog := fakeGo(t, "0.13.8", false)
	ctx, cancel := context.WithTimeout(context.Background(), 3*lockPoll)
	defer cancel()
	_, err = (&Installer{BinDir: binDir, GoCmd: goCmd}).Ensure(ctx)
	if err == nil || !strings.Contains(err.Error(), context.DeadlineExceeded.Error()) {
		t.Fatalf("err = %v, want a deadline error", err)
	}
	if calls := readCalls(t, callLog); len(calls) != 0 {
		t.Errorf("go ran while another process held the lock: %q", calls)
	}
}
