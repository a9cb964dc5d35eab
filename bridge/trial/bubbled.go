package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Timeouts of bubbled's process lifecycle.
const (
	// bubbledStartTimeout bounds the wait for "Bridge started" in the log.
	bubbledStartTimeout = 90 * time.Second
	// bubbledStopGrace is how long stop waits after SIGTERM before it kills bubbled; bubbled
	// itself gives bridgev2 10 s to stop.
	bubbledStopGrace = 20 * time.Second
	// logPoll is how often the log is read while waiting for a line.
	logPoll = 100 * time.Millisecond
)

// startedMarker is the line bridgev2 logs when the bridge is up.
const startedMarker = "Bridge started"

// buildBubbled compiles bubbled from the repository at root into out.
func buildBubbled(ctx context.Context, root, out string) error {
	goCmd, err := goCommand()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, goCmd, "build", "-tags", "goolm", "-o", out, ".")
	cmd.Dir = root
	// bubbled stores its data in SQLite through mattn/go-sqlite3, which needs cgo.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("build bubbled: %w", ctx.Err())
		}
		hint := ""
		if text := output.String(); strings.Contains(text, "cgo") || strings.Contains(text, "gcc") {
			hint = "; bubbled needs a C compiler for cgo (install gcc)"
		}
		return fmt.Errorf("build bubbled with `go build -tags goolm -o %s .` in %s: %w%s\n%s", out, root, err, hint, tailLines(output.String(), 30))
	}
	return nil
}

// generateRegistration runs `bubbled -c cfg -g -r reg`, which writes the appservice
// registration and stores fresh appservice tokens in the config.
func generateRegistration(ctx context.Context, bin, dir, cfg, reg string) error {
	cmd := exec.CommandContext(ctx, bin, "-c", cfg, "-g", "-r", reg)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("write the appservice registration with `bubbled -c %s -g -r %s`: %w\n%s", cfg, reg, err, tailLines(string(out), 30))
	}
	return nil
}

// bubbledProc is one run of the bubbled binary, its output appended to a log file.
type bubbledProc struct {
	cmd       *exec.Cmd
	logPath   string
	logOffset int64         // where this run's output starts in the log
	done      chan struct{} // closed when the process has exited; err is set before
	err       error
}

// defaultMetricsPort is metrics.listen's default port (config/defaults.yaml).
const defaultMetricsPort = 9466

// startBubbled starts `bubbled -c cfg --ignore-unsupported-server` in dir with its output
// appended to logPath, its metrics on 127.0.0.1:9466 or, when taken, a free port. The
// goroutine that waits for the process belongs to the returned bubbledProc and ends when the
// process exits, which stop forces.
func startBubbled(bin, dir, cfg, logPath string) (*bubbledProc, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open bubbled's log: %w", err)
	}
	offset, err := logFile.Seek(0, io.SeekEnd)
	if err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("open bubbled's log: %w", err)
	}
	fmt.Fprintf(logFile, "=== trial: starting bubbled at %s\n", time.Now().Format(time.RFC3339))
	cmd := exec.Command(bin, "-c", cfg, "--ignore-unsupported-server")
	cmd.Dir = dir
	if _, set := os.LookupEnv("BUBBLED_METRICS__LISTEN"); !set {
		// The metrics listener's default port may be another bubbled's (a
		// real one, or a second trial): take it only when free.
		port, err := pickPort(defaultMetricsPort)
		if err != nil {
			_ = logFile.Close()
			return nil, fmt.Errorf("pick a port for bubbled's metrics: %w", err)
		}
		cmd.Env = append(os.Environ(), "BUBBLED_METRICS__LISTEN=127.0.0.1:"+strconv.Itoa(port))
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start bubbled: %w", err)
	}
	p := &bubbledProc{cmd: cmd, logPath: logPath, logOffset: offset, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// waitStarted returns once this run's log holds "Bridge started". It fails when bubbled exits
// first, at the timeout, or when ctx ends.
func (p *bubbledProc) waitStarted(ctx context.Context, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(logPoll)
	defer tick.Stop()
	for {
		found, err := p.logHas(startedMarker)
		if err != nil {
			return err
		}
		if found {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("bubbled exited (%v) before it started; %s ends with:\n%s", p.err, p.logPath, p.tail(40))
		case <-ctx.Done():
			return fmt.Errorf("wait for bubbled to start: %w", ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("bubbled did not log %q within %s; %s ends with:\n%s", startedMarker, timeout, p.logPath, p.tail(40))
		case <-tick.C:
		}
	}
}

// logHas reports whether this run's part of the log holds a line containing s.
func (p *bubbledProc) logHas(s string) (bool, error) {
	f, err := os.Open(p.logPath)
	if err != nil {
		return false, fmt.Errorf("read bubbled's log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(p.logOffset, io.SeekStart); err != nil {
		return false, fmt.Errorf("read bubbled's log: %w", err)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			return true, nil
		}
	}
	return false, nil
}

// tail returns the last n lines this run wrote to the log.
func (p *bubbledProc) tail(n int) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	from := max(p.logOffset, info.Size()-64<<10)
	buf := make([]byte, info.Size()-from)
	if _, err := f.ReadAt(buf, from); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(read log: %v)", err)
	}
	return tailLines(string(buf), n)
}

// exited returns a description of bubbled's exit when it has exited, else nil.
func (p *bubbledProc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("bubbled exited on its own (%v); %s ends with:\n%s", p.err, p.logPath, p.tail(40))
	default:
		return nil
	}
}

// stop sends SIGTERM, kills bubbled after bubbledStopGrace, and waits for it to exit. It
// returns an error when bubbled had already died, had to be killed, or exited non-zero.
func (p *bubbledProc) stop() error {
	if err := p.exited(); err != nil {
		return err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("bubbled stopped with %v; %s ends with:\n%s", p.err, p.logPath, p.tail(20))
		}
		return nil
	case <-time.After(bubbledStopGrace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("bubbled did not exit within %s of SIGTERM and was killed; %s ends with:\n%s", bubbledStopGrace, p.logPath, p.tail(20))
}

// tailLines returns at most the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
