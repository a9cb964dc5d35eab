// Command bubbled bridges a phone line into Matrix: one end-to-end encrypted
// room per contact, each message sent the best way that reaches the person
// (their own Matrix account, RCS, or SMS from a USB GSM modem). main wires
// config, logging, bridgev2 and the connectors; the logic lives in bridge/,
// fallback/ and connectors/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"go.mau.fi/util/dbutil"
	"go.mau.fi/util/exzerolog"
	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/matrix"

	"github.com/bubbled/bubbled/bridge"
	"github.com/bubbled/bubbled/bridge/doctor"
	"github.com/bubbled/bubbled/bridge/metrics"
	"github.com/bubbled/bubbled/config"
)

// Version is set at link time: -ldflags "-X main.Version=v0.1.0".
var Version = "dev"

// Exit codes, documented in the README.
const (
	exitOK           = 0
	exitUsage        = 2
	exitConfig       = 11
	exitLogger       = 12
	exitDatabase     = 14
	exitStart        = 15
	exitRegistration = 17
	exitDoctor       = 19
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// flags are the command line of bubbled.
type flags struct {
	configPath      string
	registration    string
	generateReg     bool
	showVersion     bool
	ignoreUnsupport bool
}

// parseFlags reads args; ok is false when run must return code at once.
func parseFlags(args []string, stderr io.Writer) (f flags, code int, ok bool) {
	fs := flag.NewFlagSet("bubbled", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.configPath, "c", "config.yaml", "path to the config file")
	fs.StringVar(&f.configPath, "config", "config.yaml", "path to the config file")
	fs.BoolVar(&f.generateReg, "g", false, "write the appservice registration file (see -r), persist its tokens in the config, and exit")
	fs.BoolVar(&f.generateReg, "generate-registration", false, "same as -g")
	fs.StringVar(&f.registration, "r", "registration.yaml", "where -g writes the appservice registration")
	fs.StringVar(&f.registration, "registration", "registration.yaml", "same as -r")
	fs.BoolVar(&f.showVersion, "version", false, "print the version and exit")
	fs.BoolVar(&f.ignoreUnsupport, "ignore-unsupported-server", false, "start even if the homeserver advertises a Matrix spec version below v1.4 (needed for Dendrite)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: bubbled [-c config.yaml] [-g [-r registration.yaml]] [--ignore-unsupported-server] [--version]\n       bubbled doctor [-c config.yaml]\n       bubbled health [-c config.yaml]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return f, exitOK, false
		}
		return f, exitUsage, false
	}
	return f, 0, true
}

// run is main without os.Exit: it returns the exit code, and writes what it
// says before logging is set up to stdout and stderr.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "doctor" {
		return runDoctor(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "health" {
		return runHealth(args[1:], stdout, stderr)
	}
	f, code, ok := parseFlags(args, stderr)
	if !ok {
		return code
	}
	restrictFileModes()
	if f.showVersion {
		fmt.Fprintf(stdout, "bubbled %s (%s, mautrix bridgev2)\n", Version, runtime.Version())
		return exitOK
	}
	cfg, err := config.Load(f.configPath, config.LoadOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "bubbled: the config %s is not usable:\n%v\n", f.configPath, err)
		return exitConfig
	}
	if f.generateReg {
		if err := cfg.GenerateRegistration(f.registration); err != nil {
			fmt.Fprintf(stderr, "bubbled: can't write the registration: %v\n", err)
			return exitRegistration
		}
		fmt.Fprintf(stdout, "Wrote %s. Add it to your homeserver's app_service_config_files (Synapse) or app_service_api.config_files (Dendrite) and restart the homeserver.\n", f.registration)
		return exitOK
	}
	zl, err := config.NewLogger(cfg.Log)
	if err != nil {
		fmt.Fprintf(stderr, "bubbled: can't set up logging: %v\n", err)
		return exitLogger
	}
	defer func() { _ = zl.Sync() }()
	return serve(cfg, f, zl)
}

// restrictFileModes makes every file bubbled creates from now on private to
// its user (umask 077): the SQLite database with its -wal and -shm files
// (messages, RCS media, crypto keys), the config and the registration. The
// SQLite driver opens them with 0644, so without this they are
// world-readable.
func restrictFileModes() {
	syscall.Umask(0o077)
}

// runDoctor is "bubbled doctor [-c config.yaml]": it checks the config, the
// homeserver and each modem, prints what it found and returns exitDoctor
// when something blocks a start.
func runDoctor(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bubbled doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var path string
	fs.StringVar(&path, "c", "config.yaml", "path to the config file")
	fs.StringVar(&path, "config", "config.yaml", "path to the config file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	cfg, err := config.Load(path, config.LoadOptions{})
	if err != nil {
		fmt.Fprintf(stdout, "FAIL  config: %s is not usable:\n%v\n", path, err)
		return exitConfig
	}
	findings := doctor.Run(context.Background(), cfg, stdout, doctor.Options{})
	if doctor.Blocked(findings) {
		return exitDoctor
	}
	return exitOK
}

// runHealth is "bubbled health [-c config.yaml]", the container health
// check: it GETs /readyz on the metrics listener of the config (a wildcard
// address is reached on loopback), prints the answer and returns 0 when
// ready, 1 otherwise (what Docker's HEALTHCHECK expects).
func runHealth(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bubbled health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var path string
	fs.StringVar(&path, "c", "config.yaml", "path to the config file")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	cfg, err := config.Load(path, config.LoadOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "bubbled health: the config %s is not usable:\n%v\n", path, err)
		return 1
	}
	host, port, err := net.SplitHostPort(cfg.Metrics.Listen)
	if err != nil {
		fmt.Fprintln(stderr, "bubbled health: metrics.listen is off; set it to check readiness")
		return 1
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + net.JoinHostPort(host, port) + "/readyz")
	if err != nil {
		fmt.Fprintf(stdout, "not ready: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(stdout, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return exitOK
}

// serve runs the bridge until a signal or a takeover and returns the exit
// code.
func serve(cfg *config.Config, f flags, zl *zap.Logger) int {
	zlog := config.ZerologToZap(zl, cfg.Log.ZerologLevel())
	exzerolog.SetupDefaults(&zlog)

	// bubbled hands inbound SMS to bridgev2 synchronously so that a message is
	// marked delivered only once it is in Matrix (see bridge/handleremote.go).
	cfg.Bridge.PortalEventBuffer = 0

	for _, w := range cfg.Warnings {
		zl.Warn("ignored part of the config", zap.String("key", w.Key), zap.String("reason", w.Reason), zap.String("fix", w.Fix))
	}
	zl.Info("starting bubbled", zap.String("version", Version), zap.String("config", f.configPath),
		zap.String("homeserver", cfg.Homeserver.Address), zap.Int("modems", len(cfg.Network.Modems)))

	db, err := dbutil.NewFromConfig("bubbled", cfg.Database, dbutil.ZeroLogger(zlog.With().Str("db_section", "main").Logger()))
	if err != nil {
		zl.Error("failed to open the database", zap.Error(err), zap.String("type", cfg.Database.Type))
		return exitDatabase
	}

	mx := matrix.NewConnector(&cfg.Config)
	mx.IgnoreUnsupportedServer = f.ignoreUnsupport
	conn := bridge.New(cfg.Network, zl.Named("bridge"))
	conn.UseWebhooks(cfg.API.Webhooks)
	met := metrics.New()
	conn.UseMetrics(met)
	br := bridgev2.NewBridge("", db, zlog, &cfg.Bridge, mx, conn, commands.NewProcessor)
	bridge.PaceSyncs(mx, bridge.SyncGap)
	stop := make(chan int, 1)
	mx.OnWebsocketReplaced = func() { stop <- exitStart }

	ctx := zlog.WithContext(context.Background())
	listener, err := openListener(ctx, br, mx, cfg, zl)
	if err != nil {
		return exitStart
	}
	var started atomic.Bool
	closeMetrics, err := openMetrics(cfg, met, conn, listener, started.Load, zl)
	if err != nil {
		listener.Stop()
		return exitStart
	}
	defer closeMetrics()
	if err := startBridge(ctx, br); err != nil {
		listener.Stop()
		var exitErr matrix.ExitError
		if errors.As(err, &exitErr) {
			zl.Error("failed to connect to the homeserver", zap.Error(err))
			return int(exitErr.ExitCode)
		}
		zl.Error("failed to start", zap.Error(err))
		return exitStart
	}
	started.Store(true)
	listener.Start(ctx)
	if n := conn.ResumeConfirmations(ctx); n > 0 {
		zl.Info("resumed Send-as-SMS timers of messages sent before the restart", zap.Int("messages", n))
	}
	stopAPI, err := startAPI(ctx, cfg.API, conn, zl.Named("api"))
	if err != nil {
		zl.Error("failed to start the send API", zap.Error(err))
		listener.Stop()
		br.StopWithTimeout(10 * time.Second)
		return exitStart
	}
	code := waitForStop(zl, stop)
	stopAPI()
	listener.Stop()
	br.StopWithTimeout(10 * time.Second)
	return code
}

// openMetrics starts the metrics and health listener (metrics.listen, off
// when "") and returns what closes it.
func openMetrics(cfg *config.Config, met *metrics.Metrics, conn *bridge.Connector, l *bridge.Listener, started func() bool, zl *zap.Logger) (func(), error) {
	msrv, err := startMetrics(cfg, met, conn, l, started)
	if err != nil {
		zl.Error("failed to open the metrics listener (metrics.listen): change the address or write \"\" to turn it off", zap.Error(err), zap.String("listen", cfg.Metrics.Listen))
		return nil, err
	}
	if msrv == nil {
		return func() {}, nil
	}
	zl.Info("serving metrics and health", zap.String("listen", msrv.Addr()), zap.Bool("pprof", cfg.Metrics.Pprof))
	return func() { _ = msrv.Close() }, nil
}

// openListener opens the transaction journal and starts bubbled's own
// appservice listener (bridge/journal.go): every transaction is
// authenticated and journaled before the homeserver is answered, and
// handled from the journal once the bridge runs, after a crash too.
func openListener(ctx context.Context, br *bridgev2.Bridge, mx *matrix.Connector, cfg *config.Config, zl *zap.Logger) (*bridge.Listener, error) {
	l, err := bridge.NewListener(ctx, br, mx, cfg.Network.Listener, bridge.ListenerOptionsFromEnv(), zl.Named("listener"))
	if err != nil {
		zl.Error("failed to start the appservice listener", zap.Error(err),
			zap.String("address", fmt.Sprintf("%s:%d", cfg.AppService.Hostname, cfg.AppService.Port)))
	}
	return l, err
}

// startAPI serves the send API (connectors/api) on api.listen when tokens
// are configured, and returns what stops the listener. Routes that belong
// on the same listener without the API's token check (metrics, health) are
// added with srv.Handle before it serves.
func startAPI(ctx context.Context, cfg config.API, conn *bridge.Connector, zl *zap.Logger) (func(), error) {
	if cfg.Listen == "" || len(cfg.Tokens) == 0 {
		zl.Info("skipped the send API: api.tokens is empty")
		return func() {}, nil
	}
	srv, err := conn.StartAPI(ctx, cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on api.listen %s: %w; pick a free address", cfg.Listen, err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			zl.Error("stopped serving the send API", zap.Error(err))
		}
	}()
	zl.Info("started the send API", zap.String("listen", ln.Addr().String()), zap.Int("tokens", len(cfg.Tokens)))
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		<-done
	}, nil
}

// waitForStop blocks until SIGINT/SIGTERM (exit 0) or a takeover of the
// appservice connection (the code sent on stop).
func waitForStop(zl *zap.Logger, stop <-chan int) int {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	select {
	case s := <-sig:
		zl.Info("stopping on signal", zap.String("signal", s.String()))
		return exitOK
	case code := <-stop:
		zl.Warn("stopping: another bridge instance took over the connection")
		return code
	}
}

// startMetrics opens the metrics listener of metrics.listen (nil when it is
// ""), fed by the connector's lines, the journal and the homeserver.
func startMetrics(cfg *config.Config, met *metrics.Metrics, conn *bridge.Connector, journal *bridge.Listener, started func() bool) (*metrics.Server, error) {
	if cfg.Metrics.Listen == "" {
		return nil, nil
	}
	met.SetSources(metrics.Sources{
		Lines:          conn.LineStates,
		JournalBacklog: journal.Backlog,
		Homeserver:     metrics.HomeserverCheck(&http.Client{Timeout: 5 * time.Second}, cfg.Homeserver.Address),
		Started:        started,
	})
	return metrics.Listen(cfg.Metrics.Listen, met.Handler(cfg.Metrics.Pprof))
}

// startBridge runs bridgev2's start sequence without its os.Exit paths.
func startBridge(ctx context.Context, br *bridgev2.Bridge) error {
	if err := br.StartConnectors(ctx); err != nil {
		return err
	}
	if err := br.StartLogins(ctx); err != nil {
		return fmt.Errorf("start logins: %w", err)
	}
	go br.PostStart(ctx)
	return nil
}
