package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// controlServer is the control API listening on 127.0.0.1. Its serve goroutine is owned by the
// server and ends in close.
type controlServer struct {
	URL  string // e.g. http://127.0.0.1:29351
	srv  *http.Server
	done chan error // receives Serve's result once
}

// startControl listens on 127.0.0.1:port and serves h.
func startControl(port int, h http.Handler) (*controlServer, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("listen for the simulated modem's control API: %w", err)
	}
	c := &controlServer{
		URL:  "http://" + ln.Addr().String(),
		srv:  &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second},
		done: make(chan error, 1),
	}
	go func() { c.done <- c.srv.Serve(ln) }()
	return c, nil
}

// close stops the server, waiting up to 5 s for requests in flight.
func (c *controlServer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.srv.Shutdown(ctx)
	if serveErr := <-c.done; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	if err != nil {
		return fmt.Errorf("stop the control API: %w", err)
	}
	return nil
}
