package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Readiness is the body of /readyz: Ready, and what is not ready when it is
// false.
type Readiness struct {
	// Ready is true when the homeserver answers and every line is ready.
	Ready bool `json:"ready"`
	// NotReady lists what keeps bubbled from being ready, one entry per
	// check (homeserver, bridge, line <id>).
	NotReady []Problem `json:"not_ready,omitempty"`
	// Lines is the state of each line.
	Lines map[string]string `json:"lines,omitempty"`
}

// Problem is one reason bubbled is not ready.
type Problem struct {
	// Check names what was checked: "homeserver", "bridge", "line sim0".
	Check string `json:"check"`
	// Reason says what is wrong, in words for an operator.
	Reason string `json:"reason"`
}

// Ready runs the readiness checks of the Sources: the bridge has started,
// the homeserver answers, and every line is ready. A bridge without lines
// is ready (there is nothing to wait for; the config warns about it).
func (m *Metrics) Ready(ctx context.Context) Readiness {
	src := m.src.get()
	r := Readiness{Lines: map[string]string{}}
	if src.Started != nil && !src.Started() {
		r.NotReady = append(r.NotReady, Problem{Check: "bridge", Reason: "bubbled is still starting"})
	}
	if src.Homeserver != nil {
		if err := src.Homeserver(ctx); err != nil {
			r.NotReady = append(r.NotReady, Problem{Check: "homeserver", Reason: err.Error()})
		}
	}
	if src.Lines != nil {
		for _, l := range src.Lines(ctx) {
			r.Lines[l.ID] = l.State
			if !l.Ready {
				r.NotReady = append(r.NotReady, Problem{Check: "line " + l.ID, Reason: l.Problem})
			}
		}
	}
	r.Ready = len(r.NotReady) == 0
	return r
}

// Handler serves GET /metrics, /healthz and /readyz, and /debug/pprof/
// when pprof is true. Nothing here reads a request body or stores
// anything; other methods get 405.
func (m *Metrics) Handler(pprofOn bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), scrapeTimeout)
		defer cancel()
		rd := m.Ready(ctx)
		status := http.StatusOK
		if !rd.Ready {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, rd)
	})
	if pprofOn {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Server is the metrics listener. Listen starts it; Close stops it.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// Listen binds addr (host:port) and serves h on its own goroutine until
// Close.
func Listen(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, done: make(chan struct{}),
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Addr is the address the listener is bound to.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the listener, gives requests in flight up to 5 s, and waits
// for the serving goroutine.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// HomeserverCheck returns a Sources.Homeserver that asks the homeserver at
// address (its client-server URL) for /_matrix/client/versions, which needs
// no token, and says in its error what failed.
func HomeserverCheck(client *http.Client, address string) func(ctx context.Context) error {
	url := strings.TrimRight(address, "/") + "/_matrix/client/versions"
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("the homeserver does not answer (homeserver.address): %w", err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("the homeserver answered GET %s with %s", url, resp.Status)
		}
		return nil
	}
}
