package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/bubbled/bubbled/bridge/dendritetest"
)

// modulePath is the module the trial belongs to; moduleRoot checks it.
const modulePath = "github.com/bubbled/bubbled"

// Names of the files in the work folder.
const (
	stateFile        = "trial.json"
	lockName         = ".lock"
	configFile       = "config.yaml"
	registrationFile = "registration.yaml"
	bubbledBinary    = "bubbled"
	bubbledLog       = "bubbled.log"
	modemLink        = "modem"
	modemLog         = "modemsim.log"
	dendriteDir      = "dendrite"
	cryptoDB         = "trial-crypto.db"
)

// state is what one trial run leaves for the next, in trial.json (mode 0600).
type state struct {
	// Password of the Matrix user, generated once.
	Password string `json:"password"`
	// AccessToken and DeviceID are the trial's own Matrix session (the device that set up
	// the management room and runs the smoke test); its keys live in trial-crypto.db.
	AccessToken string `json:"access_token,omitempty"`
	DeviceID    string `json:"device_id,omitempty"`
	// PickleKey encrypts the keys in trial-crypto.db.
	PickleKey string `json:"pickle_key"`
	// ManagementRoom is the direct chat with the bridge bot.
	ManagementRoom string `json:"management_room,omitempty"`
	// Ports used last time, preferred again so that a Matrix client's saved homeserver URL and
	// the printed curl commands stay valid.
	HomeserverPort int `json:"homeserver_port,omitempty"`
	AppServicePort int `json:"appservice_port,omitempty"`
	ControlPort    int `json:"control_port,omitempty"`
}

// loadState reads trial.json, returning a zero state when there is none yet.
func loadState(dir string) (*state, error) {
	raw, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &state{}, nil
	} else if err != nil {
		return nil, fmt.Errorf("read trial state: %w", err)
	}
	var st state
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("read trial state %s: %w; run the trial with -fresh to start over", filepath.Join(dir, stateFile), err)
	}
	return &st, nil
}

// save writes trial.json atomically with mode 0600 (it holds the password and a token).
func (st *state) save(dir string) error {
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode trial state: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, stateFile), append(raw, '\n'), 0o600)
}

// writeFileAtomic replaces path with data through a temporary file in the same folder.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// randomSecret returns n random bytes as lower-case base32 without padding: easy to type.
func randomSecret(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate a secret: %w", err)
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)), nil
}

// moduleRoot returns the folder of the bubbled go.mod that holds the current directory.
func moduleRoot(ctx context.Context) (string, error) {
	goCmd, err := goCommand()
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, goCmd, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the repository root with `go env GOMOD`: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("find the repository root: the current folder is not inside the bubbled module; run the trial from the repository (go run -tags goolm ./bridge/trial)")
	}
	raw, err := os.ReadFile(gomod)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", gomod, err)
	}
	first, _, _ := bytes.Cut(raw, []byte("\n"))
	if strings.TrimSpace(string(first)) != "module "+modulePath {
		return "", fmt.Errorf("find the repository root: %s is not the %s module; run the trial from the bubbled repository", gomod, modulePath)
	}
	return filepath.Dir(gomod), nil
}

// goCommand finds the go command: on PATH, else in $GOROOT/bin.
func goCommand() (string, error) {
	if path, err := exec.LookPath("go"); err == nil {
		return path, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		path := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
	}
	return "", errors.New("find the go command: it is not on PATH and GOROOT is unset; install Go 1.26 and put it on PATH")
}

// wipe removes everything in dir except the lock file, for -fresh.
func wipe(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("wipe %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.Name() == lockName {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("wipe %s: %w", dir, err)
		}
	}
	return nil
}

// pickPort returns the first of candidates (0s skipped) that is free on 127.0.0.1, else any
// free port. A port that was free a moment ago may be taken before it is bound; the starts
// that follow report that.
func pickPort(candidates ...int) (int, error) {
	for _, p := range candidates {
		if p <= 0 || p > 65535 {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		if err := l.Close(); err != nil {
			return 0, fmt.Errorf("check port %d: %w", p, err)
		}
		return p, nil
	}
	return dendritetest.FreePort()
}

// pickPorts chooses the three ports: last run's first, then the preferred defaults, then
// free ones, never the same port twice.
func pickPorts(st *state, opts Options) (hs, as, control int, err error) {
	taken := map[int]bool{}
	pick := func(last, preferred int) (int, error) {
		for range 10 {
			var cands []int
			for _, c := range []int{last, preferred} {
				if !taken[c] {
					cands = append(cands, c)
				}
			}
			p, err := pickPort(cands...)
			if err != nil {
				return 0, err
			}
			if !taken[p] {
				taken[p] = true
				return p, nil
			}
		}
		return 0, errors.New("find three distinct free ports on 127.0.0.1: the free-port search kept returning taken ports")
	}
	if hs, err = pick(st.HomeserverPort, opts.HomeserverPort); err != nil {
		return
	}
	if as, err = pick(st.AppServicePort, opts.AppServicePort); err != nil {
		return
	}
	control, err = pick(st.ControlPort, opts.ControlPort)
	return
}
