// Command trial runs bubbled end to end on one machine without a modem or a homeserver of
// your own: a Dendrite on 127.0.0.1 (installed through the Go module proxy the first time), the
// simulated modem of connectors/sms/modemsim with a small HTTP control API, and bubbled itself.
// It registers the Matrix user "trial", opens a management room with the bridge bot and logs
// the simulated line in, then prints how to log in with a Matrix client and how to text the
// bridge from the simulated phone.
//
//	go run -tags goolm ./bridge/trial            # run until Ctrl-C
//	go run -tags goolm ./bridge/trial -smoke     # text the bridge, reply from Matrix, PASS/FAIL
//	go run -tags goolm ./bridge/trial -fresh     # forget the earlier trial first
//
// Its files live in .trial/ under the repository root and are reused by the next run: the same
// user, password, rooms and line. Ctrl-C (SIGINT) or SIGTERM stops bubbled, Dendrite and the
// simulator.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run is main without os.Exit: 0 on success, 1 when the trial failed, 2 for bad flags.
func run(args []string) int {
	fs := flag.NewFlagSet("trial", flag.ContinueOnError)
	var opts Options
	fs.StringVar(&opts.Dir, "dir", "", "work folder (default .trial under the repository root)")
	fs.BoolVar(&opts.Fresh, "fresh", false, "wipe the work folder first: new user, new rooms, new line login")
	fs.BoolVar(&opts.Smoke, "smoke", false, "run non-interactively: text the bridge, reply from Matrix, print PASS and exit")
	fs.IntVar(&opts.HomeserverPort, "hs-port", DefaultHomeserverPort, "preferred 127.0.0.1 port of Dendrite (a free one when taken; 0: any)")
	fs.IntVar(&opts.AppServicePort, "as-port", DefaultAppServicePort, "preferred 127.0.0.1 port of bubbled's appservice (a free one when taken; 0: any)")
	fs.IntVar(&opts.ControlPort, "control-port", DefaultControlPort, "preferred 127.0.0.1 port of the simulated modem's control API (a free one when taken; 0: any)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run -tags goolm ./bridge/trial [-smoke] [-fresh] [-dir .trial]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "trial: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	opts.Out = os.Stdout

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal the trial shuts down; a second one kills it at once (the kernel
	// then stops Dendrite and bubbled through their parent-death signal).
	context.AfterFunc(ctx, stop)

	if _, err := Run(ctx, opts); err != nil {
		fmt.Fprintf(os.Stderr, "\ntrial: %v\n", err)
		if opts.Smoke {
			fmt.Fprintln(os.Stderr, "FAIL")
		}
		return 1
	}
	return 0
}
