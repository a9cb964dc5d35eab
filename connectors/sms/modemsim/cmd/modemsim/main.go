// Command modemsim runs the AT modem simulator on a pty for manual and trial
// use, with a small HTTP control API on the loopback interface:
//
//	POST /sms?from=+15551234567      body = text: the network delivers an SMS
//	POST /status-report?mr=5&st=0    the SMSC reports on submitted part 5
//	GET  /sent                       JSON list of messages the host sent
//	GET  /stored                     JSON list of messages in storage
//	GET  /pending                    JSON list of unacknowledged MT PDUs
//
// It prints the pty path and the control URL, and stops on SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "modemsim:", err)
		os.Exit(1)
	}
}

func run() error {
	link := flag.String("link", "", "create a symlink at this path pointing to the pty (kept up to date)")
	control := flag.String("control", "127.0.0.1:0", "loopback address of the HTTP control API (host must be 127.0.0.1 or ::1)")
	number := flag.String("number", "", "own number answered by AT+CNUM (empty: none)")
	pin := flag.String("pin", "", "SIM PIN (empty: SIM ready)")
	echo := flag.Bool("echo", true, "echo on at power-up (ATE1), like real modems")
	size := flag.Int("storage-size", modemsim.DefaultStorageSize, "message storage slots")
	noCSMS := flag.Bool("no-csms", false, "answer AT+CSMS=1 with ERROR")
	cnmiModes := flag.String("cnmi-modes", modemsim.DefaultCNMIModes, "accepted +CNMI values, in +CNMI=? syntax")
	ackTimeout := flag.Duration("ack-timeout", modemsim.DefaultAckTimeout, "how long +CMT waits for AT+CNMA when +CSMS=1")
	debug := flag.Bool("debug", false, "log AT traffic details")
	flag.Parse()

	logCfg := zap.NewProductionConfig()
	if *debug {
		logCfg.Level = zap.NewAtomicLevelAt(zap.DebugLevel)
	}
	log, err := logCfg.Build()
	if err != nil {
		return fmt.Errorf("build logger: %w", err)
	}
	defer func() { _ = log.Sync() }()

	if err := checkLoopback(*control); err != nil {
		return err
	}

	sim, err := modemsim.Start(modemsim.Options{
		OwnNumber:   *number,
		PIN:         *pin,
		Echo:        *echo,
		StorageSize: *size,
		NoCSMS:      *noCSMS,
		CNMIModes:   *cnmiModes,
		AckTimeout:  *ackTimeout,
		Log:         log.Named("modemsim"),
	})
	if err != nil {
		return err
	}
	defer sim.Close()
	if *link != "" {
		if err := sim.Link(*link); err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", *control)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *control, err)
	}
	srv := &http.Server{Handler: modemsim.ControlHandler(sim), ReadHeaderTimeout: 5 * time.Second}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()

	fmt.Printf("pty: %s\n", sim.Path())
	if *link != "" {
		fmt.Printf("link: %s\n", *link)
	}
	fmt.Printf("control: http://%s\n", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
	case err := <-srvErr:
		return fmt.Errorf("serve control API: %w", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("stop control API: %w", err)
	}
	if err := <-srvErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve control API: %w", err)
	}
	return nil
}

// checkLoopback accepts only literal loopback addresses such as
// 127.0.0.1:8080: the control API delivers SMS without authentication.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-control %q: %w (want 127.0.0.1:<port>)", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-control %q: the control API binds only to a loopback address such as 127.0.0.1:<port>", addr)
	}
	return nil
}
