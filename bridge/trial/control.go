package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// maxSMSBody bounds the text of one simulated SMS posted to the control API.
const maxSMSBody = 64 << 10

// controlHandler serves the simulated network's HTTP control API for sim, the same endpoints
// as the modemsim command:
//
//	POST /sms?from=+15557654321      body = text: the phone texts the line
//	POST /status-report?mr=5&st=0    the SMSC reports on submitted part 5
//	GET  /sent                       JSON list of the messages the bridge sent
//	GET  /stored                     JSON list of the messages in the SIM's storage
//	GET  /pending                    JSON list of unacknowledged MT PDUs
func controlHandler(sim *modemsim.Sim) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sms", func(w http.ResponseWriter, r *http.Request) {
		from := senderFromQuery(r.URL.Query().Get("from"))
		if from == "" {
			http.Error(w, "missing ?from=<sender number>, e.g. ?from=%2B15557654321 (%2B is +)", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxSMSBody+1))
		if err != nil {
			http.Error(w, "read the text: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(body) > maxSMSBody {
			http.Error(w, fmt.Sprintf("the text is longer than %d bytes", maxSMSBody), http.StatusRequestEntityTooLarge)
			return
		}
		if len(body) == 0 {
			http.Error(w, "empty text: send it as the request body, e.g. curl -d 'Hello'", http.StatusBadRequest)
			return
		}
		if err := sim.Deliver(from, string(body)); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /status-report", func(w http.ResponseWriter, r *http.Request) {
		mr, errMR := strconv.Atoi(r.URL.Query().Get("mr"))
		st, errST := strconv.ParseUint(r.URL.Query().Get("st"), 0, 8)
		if errMR != nil || errST != nil {
			http.Error(w, "want ?mr=<TP-MR from /sent>&st=<TP-ST, 0 = delivered>", http.StatusBadRequest)
			return
		}
		if err := sim.DeliverStatusReport(mr, byte(st)); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /sent", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, nonNil(sim.Sent()))
	})
	mux.HandleFunc("GET /stored", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, nonNil(sim.Messages()))
	})
	mux.HandleFunc("GET /pending", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, nonNil(sim.Pending()))
	})
	return mux
}

// senderFromQuery undoes the usual mistake of an unescaped '+' in ?from=+1555…, which the
// query decodes as a space: a space followed by digits is an international number.
func senderFromQuery(from string) string {
	if rest, ok := strings.CutPrefix(from, " "); ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
		return "+" + rest
	}
	return from
}

func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

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
