// Command run-dendrite starts a test Dendrite (package dendritetest) on
// 127.0.0.1 with the given appservice registrations, prints its URL, and
// runs until SIGINT or SIGTERM. docker/check-podman.sh uses it to give the
// image a real homeserver for its health check.
//
// Usage: go run ./bridge/dendritetest/cmd/run-dendrite -port 8448 -reg registration.yaml
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/bubbled/bubbled/bridge/dendritetest"
)

func main() {
	port := flag.Int("port", 0, "127.0.0.1 port to listen on (0: a free one)")
	reg := flag.String("reg", "", "appservice registration file")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := dendritetest.Options{Port: *port}
	if *reg != "" {
		opts.AppServiceRegistrations = []string{*reg}
	}
	start, cancel := context.WithTimeout(ctx, 10*time.Minute)
	hs, err := dendritetest.Start(start, opts)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "run-dendrite: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(hs.URL)
	<-ctx.Done()
	_ = hs.Close()
}
