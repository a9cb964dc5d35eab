package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/bridge/dendritetest"
	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// Preferred ports on 127.0.0.1; a taken one is replaced by a free port.
const (
	DefaultHomeserverPort = 8008
	DefaultAppServicePort = 29350
	DefaultControlPort    = 29351
)

// healthPoll is how often a running trial checks that Dendrite is still alive.
const healthPoll = 2 * time.Second

// Options configure Run. The zero value runs interactively in <repository>/.trial on free
// ports, printing nothing.
type Options struct {
	// Dir is the work folder; "" means .trial under the repository root. It is created when
	// missing and reused by later runs.
	Dir string
	// Fresh wipes Dir first.
	Fresh bool
	// Smoke runs the smoke test (SMS in, reply out) after setting up, then returns.
	Smoke bool
	// HomeserverPort, AppServicePort and ControlPort are the preferred 127.0.0.1 ports of
	// Dendrite, bubbled's appservice and the simulated modem's control API. A run prefers the
	// ports of the run before, then these, then free ones; 0 skips the preference.
	HomeserverPort, AppServicePort, ControlPort int
	// DendriteBin is the folder of the Dendrite tools; "" means dendritetest.Ensure's, which
	// installs them on first use.
	DendriteBin string
	// Out receives the trial's progress and instructions; nil discards them.
	Out io.Writer
}

// Report describes a trial run.
type Report struct {
	HomeserverURL string
	ControlURL    string
	UserID        id.UserID
	Password      string
	// Registered says the Matrix user was created in this run.
	Registered bool
	// Login says how the management room and the line login were found or made.
	Login *loginOutcome
	// Ready is the time from the start of Run until the trial was ready to use.
	Ready time.Duration
	// Smoke is the smoke test's result (Options.Smoke).
	Smoke *SmokeResult
}

// Run sets up and runs the trial: the Dendrite tools and the bubbled binary, the simulated
// modem and its control API, bubbled's config and registration, Dendrite, bubbled, the Matrix
// user and the line login. Interactive runs print how to use the trial and block until ctx
// ends (a clean stop, nil error) or a component dies; smoke runs return after the smoke test.
// Everything it started is stopped before it returns.
func Run(ctx context.Context, opts Options) (rep *Report, err error) {
	begin := time.Now()
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }

	var cleanups []func() error
	defer func() {
		var errs []error
		for i := len(cleanups) - 1; i >= 0; i-- {
			if cerr := cleanups[i](); cerr != nil {
				errs = append(errs, cerr)
			}
		}
		if len(errs) > 0 {
			err = errors.Join(append([]error{err}, errs...)...)
		}
		if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) && !opts.Smoke {
			say("Stopped before the trial was ready.")
			err = nil
		} else if err == nil && !opts.Smoke {
			say("Stopped.")
		}
	}()

	root, err := moduleRoot(ctx)
	if err != nil {
		return nil, err
	}
	dir, err := workDir(root, opts.Dir)
	if err != nil {
		return nil, err
	}
	release, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() error { release(); return nil })
	if opts.Fresh {
		if err := wipe(dir); err != nil {
			return nil, err
		}
		say("Wiped %s (-fresh).", display(dir))
	}
	st, err := loadState(dir)
	if err != nil {
		return nil, err
	}
	if st.Password == "" {
		if st.Password, err = randomSecret(10); err != nil {
			return nil, err
		}
	}
	if st.PickleKey == "" {
		if st.PickleKey, err = randomSecret(20); err != nil {
			return nil, err
		}
	}
	hsPort, asPort, controlPort, err := pickPorts(st, opts)
	if err != nil {
		return nil, err
	}
	st.HomeserverPort, st.AppServicePort, st.ControlPort = hsPort, asPort, controlPort
	if err := st.save(dir); err != nil {
		return nil, err
	}
	say("Trial folder: %s (kept for the next run; -fresh starts over)", display(dir))

	// Tools: Dendrite (installed once into the user cache) and bubbled (built every run; the
	// Go build cache makes rebuilds quick).
	binDir, err := ensureDendrite(ctx, opts.DendriteBin, say)
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, bubbledBinary)
	say("Building bubbled (go build -tags goolm -o %s .) …", display(bin))
	stepStart := time.Now()
	if err := buildBubbled(ctx, root, bin); err != nil {
		return nil, err
	}
	say("  built in %s", since(stepStart))

	// The simulated modem, in this process, with its control API.
	sim, closeSim, err := startModem(dir)
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, closeSim)
	ctl, err := startControl(controlPort, modemsim.ControlHandler(sim))
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, ctl.close)
	say("Simulated modem: SIM %s on %s -> %s; control API %s", lineNumber, display(filepath.Join(dir, modemLink)), sim.Path(), ctl.URL)

	// bubbled's config and registration, which Dendrite loads at start.
	cfgPath := filepath.Join(dir, configFile)
	regPath := filepath.Join(dir, registrationFile)
	hsURL := fmt.Sprintf("http://127.0.0.1:%d", hsPort)
	wrote, err := ensureConfig(cfgPath, bubbledSettings{
		HomeserverURL:  hsURL,
		AppServicePort: asPort,
		ModemDevice:    filepath.Join(dir, modemLink),
	})
	if err != nil {
		return nil, err
	}
	if wrote {
		say("Wrote %s", display(cfgPath))
	}
	if err := generateRegistration(ctx, bin, dir, cfgPath, regPath); err != nil {
		return nil, err
	}

	say("Starting Dendrite %s on %s …", dendritetest.Version, hsURL)
	stepStart = time.Now()
	hs, err := dendritetest.Start(ctx, dendritetest.Options{
		AppServiceRegistrations: []string{regPath},
		ServerName:              serverName,
		Dir:                     filepath.Join(dir, dendriteDir),
		Port:                    hsPort,
		BinDir:                  binDir,
	})
	if err != nil {
		return nil, fmt.Errorf("%w (Dendrite's files are in %s)", err, display(filepath.Join(dir, dendriteDir)))
	}
	cleanups = append(cleanups, func() error {
		hs.Stop()
		if err := hs.Err(); err != nil && !dendriteStoppedBySignal(ctx, err) {
			return err
		}
		return nil
	})
	say("  Dendrite answers after %s", since(stepStart))

	say("Starting bubbled (appservice on 127.0.0.1:%d, log %s) …", asPort, display(filepath.Join(dir, bubbledLog)))
	stepStart = time.Now()
	proc, err := startBubbled(bin, dir, cfgPath, filepath.Join(dir, bubbledLog))
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, proc.stop)
	if err := proc.waitStarted(ctx, bubbledStartTimeout); err != nil {
		return nil, err
	}
	say("  bubbled started after %s", since(stepStart))

	// The Matrix user, its management room with the bot, and the line login.
	u, registered, err := connectUser(ctx, hs, st, dir)
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, u.close)
	if registered {
		say("Registered the Matrix user @%s:%s", trialUser, serverName)
	} else {
		say("Signed in as the existing Matrix user @%s:%s", trialUser, serverName)
	}
	u.startSync(ctx)
	login, err := u.ensureLineLogin(ctx, id.RoomID(st.ManagementRoom))
	if err != nil {
		return nil, fmt.Errorf("%w\nbubbled's log %s ends with:\n%s", err, display(proc.logPath), proc.tail(30))
	}
	st.ManagementRoom = string(login.Room)
	if err := st.save(dir); err != nil {
		return nil, err
	}
	if login.RoomCreated {
		say("Opened a direct chat with %s (%s)", botMXID, login.Room)
	}
	if login.LoggedInNow {
		say("Sent `login`; the bot replied: %s", firstLine(login.BotSaid))
	} else {
		say("The line is already logged in: %s", firstLine(login.BotSaid))
	}

	rep = &Report{
		HomeserverURL: hs.URL,
		ControlURL:    ctl.URL,
		UserID:        u.cli.UserID,
		Password:      st.Password,
		Registered:    registered,
		Login:         login,
		Ready:         time.Since(begin),
	}
	say("Ready after %s.", rep.Ready.Round(100*time.Millisecond))

	if opts.Smoke {
		say("")
		res, err := smoke(ctx, u, ctl.URL, login.Room, say)
		if err != nil {
			return rep, fmt.Errorf("smoke test: %w\nbubbled's log %s ends with:\n%s", err, display(proc.logPath), proc.tail(30))
		}
		rep.Smoke = res
		say("")
		say("PASS: SMS -> Matrix %s, Matrix -> SMS %s (portal %s, end-to-end encrypted); trial ready after %s",
			res.Inbound.Round(time.Millisecond), res.Outbound.Round(time.Millisecond), res.Portal, rep.Ready.Round(100*time.Millisecond))
		return rep, nil
	}

	// From here on the person's own Matrix client takes over; the trial's session stops
	// syncing so that it neither joins rooms nor reads messages for them.
	if err := u.close(); err != nil {
		return rep, err
	}
	printInstructions(out, rep, dir)
	tick := time.NewTicker(healthPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			say("\nStopping bubbled, Dendrite and the simulated modem …")
			return rep, nil
		// The cleanups report the details (exit status, the end of the log).
		case <-proc.done:
			return rep, errors.New("bubbled stopped while the trial was running")
		case <-tick.C:
			if hs.Err() != nil {
				return rep, errors.New("Dendrite stopped while the trial was running")
			}
		}
	}
}

// workDir resolves and creates the work folder: dir, or .trial under the repository root.
func workDir(root, dir string) (string, error) {
	if dir == "" {
		dir = filepath.Join(root, ".trial")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolve the trial folder %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", fmt.Errorf("create the trial folder: %w", err)
	}
	return abs, nil
}

// ensureDendrite returns the folder of the Dendrite tools, installing them when missing.
func ensureDendrite(ctx context.Context, binDir string, say func(string, ...any)) (string, error) {
	if binDir != "" {
		if !dendritetest.Installed(binDir) {
			return "", fmt.Errorf("the Dendrite tools %v are not all in %s", dendritetest.Tools, binDir)
		}
		return binDir, nil
	}
	dir, err := dendritetest.DefaultBinDir()
	if err != nil {
		return "", err
	}
	if !dendritetest.Installed(dir) {
		say("Installing Dendrite %s into %s through the Go module proxy (first time only; about two minutes on two cores) …", dendritetest.Version, dir)
	}
	start := time.Now()
	dir, err = (&dendritetest.Installer{BinDir: dir}).Ensure(ctx)
	if err != nil {
		return "", err
	}
	if d := time.Since(start); d > 5*time.Second {
		say("  installed in %s", d.Round(time.Second))
	}
	return dir, nil
}

// startModem starts the simulated modem with the SIM number lineNumber, links dir/modem to its
// pty and logs its AT traffic to dir/modemsim.log. The returned function stops it.
func startModem(dir string) (*modemsim.Sim, func() error, error) {
	logFile, err := os.OpenFile(filepath.Join(dir, modemLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open the simulated modem's log: %w", err)
	}
	enc := zap.NewDevelopmentEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(logFile), zapcore.DebugLevel)).Named("modemsim")
	sim, err := modemsim.Start(modemsim.Options{OwnNumber: lineNumber, Echo: true, Log: log})
	if err != nil {
		_ = logFile.Close()
		return nil, nil, fmt.Errorf("start the simulated modem: %w", err)
	}
	closeSim := func() error {
		err := sim.Close()
		_ = log.Sync()
		return errors.Join(err, logFile.Close())
	}
	if err := sim.Link(filepath.Join(dir, modemLink)); err != nil {
		return nil, nil, errors.Join(err, closeSim())
	}
	return sim, closeSim, nil
}

// dendriteStoppedBySignal reports whether err only says that Dendrite exited on its own after
// the trial was interrupted: the terminal's Ctrl-C reaches Dendrite too (it shares the
// trial's process group), and Dendrite shuts down on SIGINT before the trial stops it.
func dendriteStoppedBySignal(ctx context.Context, err error) bool {
	if ctx.Err() == nil {
		return false
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "dendrite exited on its own (<nil>)") ||
		strings.HasPrefix(msg, "dendrite exited on its own (signal: interrupt)")
}

// printInstructions tells the person how to use the running trial.
func printInstructions(w io.Writer, rep *Report, dir string) {
	fmt.Fprintf(w, `
================================================================================
bubbled is running.

Log in with any Matrix client (Element desktop, Cinny, FluffyChat…) using this
homeserver URL:

    Homeserver URL:  %[1]s
    Username:        %[2]s        (Matrix ID %[3]s)
    Password:        %[4]s

Your direct chat with the bridge bot %[5]s is open and the simulated
line %[6]s is logged in. Text the line from the simulated phone %[7]s:

    curl -d 'Hello from the phone' '%[8]s/sms?from=%%2B%[9]s'

The message appears in an end-to-end encrypted room with
%[10]s; what you write there leaves as an SMS.
See what the bridge sent to the simulated network:

    curl %[8]s/sent

Follow the bridge's log:

    tail -f %[11]s

Ctrl-C stops bubbled, Dendrite and the simulated modem. Run the trial again to
resume with the same user, password and rooms; -fresh starts over.
================================================================================
`, rep.HomeserverURL, trialUser, rep.UserID, rep.Password, botMXID, lineNumber, phoneNumber,
		rep.ControlURL, strings.TrimPrefix(phoneNumber, "+"), ghostMXID(phoneNumber), display(filepath.Join(dir, bubbledLog)))
}

// display shows path relative to the current folder when it is below it.
func display(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	rel, err := filepath.Rel(wd, path)
	if err != nil || strings.HasPrefix(rel, "..") {
		return path
	}
	return rel
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}
