package dendritetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults for Options and the process lifecycle.
const (
	DefaultServerName   = "localhost"
	DefaultLogLevel     = "warn"
	DefaultStartTimeout = 60 * time.Second
	// stopGrace is how long Stop waits after SIGTERM before it kills Dendrite.
	stopGrace = 15 * time.Second
	// readyPoll is how often Start asks /_matrix/client/versions while Dendrite starts.
	readyPoll = 20 * time.Millisecond
	// portAttempts bounds the retries when another process takes a port FreePort chose.
	portAttempts = 5
)

// Options configure Start. The zero value starts a server named "localhost" without
// appservices in a new temporary folder.
type Options struct {
	// AppServiceRegistrations are paths of appservice registration files, loaded at start.
	// Relative paths are made absolute. Dendrite refuses to start when one is invalid.
	AppServiceRegistrations []string
	// ServerName is the Matrix server name (the part after ':' in user IDs); default
	// "localhost".
	ServerName string
	// Dir is the folder for the key, config, log and databases. "" means a new temporary folder
	// that Close removes. A Dir that already holds a config from an earlier Start is reused
	// with its data (users, rooms).
	Dir string
	// Port is the 127.0.0.1 port to listen on; 0 means a free one (Start then retries with
	// another port when a stranger takes it first). Set it when the bridge's config must name
	// the homeserver before Dendrite starts; Start fails if the port is taken.
	Port int
	// BinDir holds the Dendrite binaries; "" means Ensure (which may install them).
	BinDir string
	// LogLevel is Dendrite's log level (trace, debug, info, warn, error); default "warn".
	LogLevel string
	// StartTimeout bounds each start until the client API answers; default 60s.
	StartTimeout time.Duration
}

// Server is a running (or stopped) Dendrite on 127.0.0.1. URL, ServerName, Dir, ConfigPath
// and LogPath do not change after Start; Restart reuses the port. Stop, Restart, Err,
// SetRegistrations and Close may be called from any goroutine; they serialize.
type Server struct {
	// URL is the homeserver base URL, e.g. "http://127.0.0.1:41234".
	URL string
	// ServerName is the Matrix server name.
	ServerName string
	// Dir is the server's folder.
	Dir string
	// ConfigPath is the dendrite.yaml in use.
	ConfigPath string
	// LogPath is the file that receives Dendrite's stdout and stderr, across restarts.
	LogPath string

	binDir       string
	sharedSecret string
	logLevel     string
	startTimeout time.Duration
	port         int
	ownsDir      bool

	mu      sync.Mutex // serializes lifecycle calls; guards regs, proc and exitErr
	regs    []string
	proc    *process // nil while stopped
	exitErr error    // how the last run ended badly, see Err; reset by each start
}

// Start prepares a Dendrite in opts.Dir (or a new temporary folder), starts it on a free
// 127.0.0.1 port and returns once GET /_matrix/client/versions answers 200. ctx bounds the
// preparation and the start; the process itself runs until Stop or Close.
func Start(ctx context.Context, opts Options) (*Server, error) {
	s := &Server{
		ServerName:   opts.ServerName,
		binDir:       opts.BinDir,
		logLevel:     opts.LogLevel,
		startTimeout: opts.StartTimeout,
	}
	if s.ServerName == "" {
		s.ServerName = DefaultServerName
	}
	if s.logLevel == "" {
		s.logLevel = DefaultLogLevel
	}
	if s.startTimeout <= 0 {
		s.startTimeout = DefaultStartTimeout
	}
	var err error
	if s.regs, err = absPaths(opts.AppServiceRegistrations); err != nil {
		return nil, err
	}
	if s.binDir == "" {
		if s.binDir, err = Ensure(ctx); err != nil {
			return nil, err
		}
	} else if !Installed(s.binDir) {
		return nil, fmt.Errorf("find Dendrite tools %v in %s: missing; run Ensure or go run ./bridge/dendritetest/cmd/ensure-dendrite", Tools, s.binDir)
	}
	if s.Dir, s.ownsDir, err = prepareDir(opts.Dir); err != nil {
		return nil, err
	}
	s.ConfigPath = filepath.Join(s.Dir, "dendrite.yaml")
	s.LogPath = filepath.Join(s.Dir, "dendrite.log")
	if s.sharedSecret, err = randomHex(16); err != nil {
		return nil, s.failStart(err)
	}
	if err := s.generate(ctx); err != nil {
		return nil, s.failStart(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 1; ; attempt++ {
		s.port = opts.Port
		if s.port == 0 {
			if s.port, err = freePort(); err != nil {
				return nil, s.failStart(err)
			}
		}
		err = s.startLocked(ctx)
		if err == nil {
			s.URL = "http://" + s.addr()
			return s, nil
		}
		if opts.Port != 0 || !errors.Is(err, errAddrInUse) || attempt == portAttempts {
			return nil, s.failStart(err)
		}
	}
}

// failStart removes a folder Start created and returns err.
func (s *Server) failStart(err error) error {
	if s.ownsDir {
		_ = os.RemoveAll(s.Dir)
	}
	return err
}

func prepareDir(dir string) (abs string, owned bool, err error) {
	if dir == "" {
		abs, err = os.MkdirTemp("", "dendrite-")
		if err != nil {
			return "", false, fmt.Errorf("create Dendrite folder: %w", err)
		}
		return abs, true, nil
	}
	if abs, err = filepath.Abs(dir); err != nil {
		return "", false, fmt.Errorf("resolve Dendrite folder %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", false, fmt.Errorf("create Dendrite folder: %w", err)
	}
	return abs, false, nil
}

func absPaths(paths []string) ([]string, error) {
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("resolve appservice registration path %s: %w", p, err)
		}
		out = append(out, abs)
	}
	return out, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate Dendrite shared secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// generate writes the signing key and the generated config unless the folder already has them.
func (s *Server) generate(ctx context.Context) error {
	key := s.keyPath()
	if _, err := os.Stat(key); errors.Is(err, fs.ErrNotExist) {
		if err := s.run(ctx, nil, "generate-keys", "--private-key", key); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("check Dendrite signing key: %w", err)
	}
	if _, err := os.Stat(s.ConfigPath); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(s.Dir, "data"), 0o700); err != nil {
		return fmt.Errorf("create Dendrite data folder: %w", err)
	}
	var cfg strings.Builder
	if err := s.run(ctx, &cfg, "generate-config", "-dir", filepath.Join(s.Dir, "data"), "-server", s.ServerName); err != nil {
		return err
	}
	if err := os.WriteFile(s.ConfigPath, []byte(cfg.String()), 0o600); err != nil {
		return fmt.Errorf("write Dendrite config: %w", err)
	}
	return nil
}

func (s *Server) keyPath() string { return filepath.Join(s.Dir, "matrix_key.pem") }

func (s *Server) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// run runs one Dendrite tool in the server folder; stdout goes to out when not nil.
func (s *Server) run(ctx context.Context, out io.Writer, tool string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, tool), args...)
	cmd.Dir = s.Dir
	var stderr strings.Builder
	cmd.Stdout = out
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("run Dendrite %s: %w\n%s", tool, err, tail([]byte(stderr.String()), 20))
	}
	return nil
}

// writeConfig applies the harness settings (current registrations included) to the config.
func (s *Server) writeConfig() error {
	raw, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		return fmt.Errorf("read Dendrite config: %w", err)
	}
	edited, err := editConfig(raw, configEdits{
		PrivateKey:    s.keyPath(),
		SharedSecret:  s.sharedSecret,
		Registrations: s.regs,
		LogLevel:      s.logLevel,
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.ConfigPath, edited, 0o600); err != nil {
		return fmt.Errorf("write Dendrite config: %w", err)
	}
	return nil
}

// SetRegistrations replaces the appservice registration files. They take effect at the next
// Restart, since Dendrite reads them only at start.
func (s *Server) SetRegistrations(paths []string) error {
	abs, err := absPaths(paths)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.regs = abs
	return nil
}

// Stop stops Dendrite: SIGTERM, then SIGKILL after 15 s, and waits for it to exit. The data
// stays, so Restart can start it again. Stop on a stopped server does nothing. When Dendrite
// had died on its own or ignored SIGTERM, Err says so afterwards.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.proc == nil {
		return
	}
	s.exitErr = s.proc.stop()
	s.proc = nil
}

// Err reports how the current or last run went wrong: Dendrite exiting on its own (a crash),
// or, after Stop, Dendrite ignoring SIGTERM until it was killed. It returns nil while Dendrite
// runs normally and after a clean Stop. The message ends with the tail of the log.
func (s *Server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return s.proc.exited()
	}
	return s.exitErr
}

// Restart stops Dendrite when it runs and starts it again on the same port with the same data,
// the current registrations (see SetRegistrations) and a fresh config edit. Access tokens
// issued before stay valid. It fails if another process took the port in between.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
	return s.startLocked(ctx)
}

// Close stops Dendrite and removes the folder when Start created it. It returns Err's report
// of a bad end, joined with any error removing the folder.
func (s *Server) Close() error {
	s.Stop()
	err := s.Err()
	if s.ownsDir {
		if rmErr := os.RemoveAll(s.Dir); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove Dendrite folder: %w", rmErr))
		}
	}
	return err
}

// freePort is FreePort; tests replace it to hand Start a taken port.
var freePort = FreePort

// errAddrInUse marks a start that failed because the port was taken.
var errAddrInUse = errors.New("address already in use")

// startLocked writes the config, starts the process and waits until it answers. s.mu is held
// and no process runs.
func (s *Server) startLocked(ctx context.Context) error {
	s.exitErr = nil
	if err := s.writeConfig(); err != nil {
		return err
	}
	logFile, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open Dendrite log: %w", err)
	}
	offset, err := logFile.Seek(0, io.SeekEnd)
	if err != nil {
		_ = logFile.Close()
		return fmt.Errorf("open Dendrite log: %w", err)
	}
	fmt.Fprintf(logFile, "=== dendritetest: starting dendrite %s on %s at %s\n", Version, s.addr(), time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(filepath.Join(s.binDir, "dendrite"),
		"-config", s.ConfigPath,
		"-http-bind-address", s.addr(),
		"-https-bind-address", "")
	cmd.Dir = s.Dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("start dendrite: %w", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), logFile: logFile, logPath: s.LogPath, logOffset: offset}
	// This goroutine belongs to p: it ends when the process exits, which Stop forces.
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := p.waitReady(ctx, "http://"+s.addr(), s.startTimeout); err != nil {
		return err
	}
	s.proc = p
	return nil
}

// process is one run of the dendrite binary.
type process struct {
	cmd       *exec.Cmd
	done      chan struct{} // closed when the process has exited; err is set before
	err       error
	logFile   *os.File
	logPath   string
	logOffset int64 // where this run's output starts in the log
}

func (p *process) waitReady(ctx context.Context, baseURL string, timeout time.Duration) error {
	client := &http.Client{
		// Short, so that a stranger holding the port (accepting, never answering) does not
		// hide Dendrite's fatal "address already in use" for long.
		Timeout:   time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		// After a fatal log line Dendrite can take seconds to exit; it will not recover.
		if logLine(p.tail(), "level=fatal", "level=panic") != "" {
			_ = p.cmd.Process.Kill()
			<-p.done
			return p.startFailed("it logged a fatal error")
		}
		if versionsOK(ctx, client, baseURL) {
			return nil
		}
		select {
		case <-p.done:
			return p.startFailed(fmt.Sprintf("it exited (%v)", p.err))
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("start dendrite: %w", ctx.Err()), p.stop())
		case <-deadline.C:
			out := p.tail()
			return errors.Join(fmt.Errorf("start dendrite: no answer from %s/_matrix/client/versions within %s; log %s ends with:\n%s", baseURL, timeout, p.logPath, out), p.stop())
		case <-tick.C:
		}
	}
}

// startFailed closes the log of a process that ended during start and describes why,
// wrapping errAddrInUse when the port was taken.
func (p *process) startFailed(what string) error {
	_ = p.logFile.Close()
	out := p.tail()
	err := fmt.Errorf("start dendrite: %s before answering%s; log %s ends with:\n%s", what, reason(out), p.logPath, out)
	if strings.Contains(out, "address already in use") {
		return fmt.Errorf("%w: %w", errAddrInUse, err)
	}
	return err
}

func versionsOK(ctx context.Context, client *http.Client, baseURL string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/_matrix/client/versions", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// exited describes the process's exit when it has already exited on its own, else nil.
func (p *process) exited() error {
	select {
	case <-p.done:
		out := p.tail()
		return fmt.Errorf("dendrite exited on its own (%v)%s; log %s ends with:\n%s", p.err, reason(out), p.logPath, out)
	default:
		return nil
	}
}

// stop ends the process (SIGTERM, SIGKILL after stopGrace) and closes the log. It returns an
// error when the process had exited on its own or had to be killed.
func (p *process) stop() error {
	defer p.logFile.Close()
	if err := p.exited(); err != nil {
		return err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("stop dendrite: no exit within %s of SIGTERM, killed it; log %s ends with:\n%s", stopGrace, p.logPath, p.tail())
}

// tail returns the last lines this run wrote to the log.
func (p *process) tail() string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	defer f.Close()
	const maxTail = 8 << 10
	info, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	from := max(p.logOffset, info.Size()-maxTail)
	buf := make([]byte, info.Size()-from)
	if _, err := f.ReadAt(buf, from); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(read log: %v)", err)
	}
	return tail(buf, 30)
}

// reason returns ": <message>" for the last panic, fatal or error line in Dendrite's log output
// (logrus text format), or "" when there is none. It heads error messages, above the tail that
// a panic's stack trace may fill.
func reason(out string) string {
	if line := logLine(out, "level=panic", "level=fatal", "level=error"); line != "" {
		return ": " + line
	}
	return ""
}

// logLine returns the last line of out holding one of the level markers, from the marker on.
func logLine(out string, levels ...string) string {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		for _, level := range levels {
			if at := strings.Index(lines[i], level); at >= 0 {
				return strings.TrimSpace(lines[i][at:])
			}
		}
	}
	return ""
}
