// Command ensure-dendrite installs the Dendrite tools the tests use (see package dendritetest)
// unless they are already in the cache, and prints their folder. CI runs it before the tests
// so that the one-time install (about two minutes cold) is not charged to a test's timeout.
//
// Usage: go run ./bridge/dendritetest/cmd/ensure-dendrite [-timeout 20m]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/bridge/dendritetest"
)

func main() {
	timeout := flag.Duration("timeout", 20*time.Minute, "give up installing after this long")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	log, err := zap.NewDevelopment()
	if err != nil {
		fmt.Fprintln(os.Stderr, "create logger:", err)
		os.Exit(1)
	}
	dir, err := (&dendritetest.Installer{Log: log}).Ensure(ctx)
	_ = log.Sync()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ensure Dendrite:", err)
		os.Exit(1)
	}
	fmt.Println(dir)
}
