// Package doctor is "bubbled doctor": it checks what a start needs and
// prints, for an operator, what it found: the config (loaded and validated
// by main before Run), the homeserver and the appservice token, and each
// configured modem (who else holds the port, SIM and PIN state, operator,
// registration, signal, SMS centre, message storage). It changes nothing:
// it never enters a PIN and never writes to the database.
package doctor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/config"
)

// Level grades a finding.
type Level string

// Levels of findings. Only Fail blocks a start.
const (
	OK   Level = "ok"
	Warn Level = "warn"
	Fail Level = "FAIL"
)

// Finding is one line of the report.
type Finding struct {
	// Check names what was checked: "config", "homeserver", "modem sim0".
	Check string
	// Level grades it.
	Level Level
	// Text says what was found.
	Text string
	// Fix says what to do; "" for OK findings.
	Fix string
}

// Options adjusts Run; the zero value checks the real system.
type Options struct {
	// HTTP reaches the homeserver; default a client with a 10 s timeout.
	HTTP *http.Client
	// ProcRoot is where the process table is read from; default /proc.
	ProcRoot string
	// ModemTimeout bounds the talk with each modem; default 30 s.
	ModemTimeout time.Duration
	// Log receives the AT traces (debug); default none.
	Log *zap.Logger
}

func (o Options) withDefaults() Options {
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 10 * time.Second}
	}
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.ModemTimeout <= 0 {
		o.ModemTimeout = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return o
}

// Run checks cfg, writes the report to w and returns the findings; the
// start is blocked when one of them is Fail (see Blocked).
func Run(ctx context.Context, cfg *config.Config, w io.Writer, o Options) []Finding {
	o = o.withDefaults()
	var all []Finding
	emit := func(fs ...Finding) {
		for _, f := range fs {
			fmt.Fprintf(w, "%-5s %s: %s\n", f.Level, f.Check, f.Text)
			if f.Fix != "" {
				fmt.Fprintf(w, "      fix: %s\n", f.Fix)
			}
		}
		all = append(all, fs...)
	}
	fmt.Fprintf(w, "bubbled doctor: %s\n", cfg.Path)
	emit(configFindings(cfg)...)
	emit(homeserverFindings(ctx, cfg, o.HTTP)...)
	for _, m := range cfg.Network.Modems {
		emit(modemFindings(ctx, cfg, m, o)...)
	}
	if n := countFails(all); n > 0 {
		fmt.Fprintf(w, "%d problem(s) block a start: fix the FAIL lines above and run bubbled doctor again.\n", n)
	} else {
		fmt.Fprintln(w, "Nothing blocks a start.")
	}
	return all
}

// Blocked reports whether any finding blocks a start.
func Blocked(fs []Finding) bool { return countFails(fs) > 0 }

func countFails(fs []Finding) int {
	n := 0
	for _, f := range fs {
		if f.Level == Fail {
			n++
		}
	}
	return n
}

// configFindings reports the config: main has loaded and validated it, so
// only its warnings are left to show.
func configFindings(cfg *config.Config) []Finding {
	out := []Finding{{Check: "config", Level: OK, Text: fmt.Sprintf("loaded and valid (%d modem(s), %d warning(s))", len(cfg.Network.Modems), len(cfg.Warnings))}}
	for _, w := range cfg.Warnings {
		out = append(out, Finding{Check: "config", Level: Warn, Text: w.Key + ": " + w.Reason, Fix: w.Fix})
	}
	return out
}

// trimURL joins the homeserver address and a path.
func trimURL(address, path string) string { return strings.TrimRight(address, "/") + path }
