package aslistener

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Limits bound what one connection to the listener may cost.
type Limits struct {
	// MaxBodyBytes caps every request body; a larger one is answered 413.
	MaxBodyBytes int64
	// ReadHeaderTimeout, ReadTimeout and IdleTimeout close connections
	// that send their headers, their request, or their next request too
	// slowly. MaxHeaderBytes caps the request line and headers.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
}

// appPrefix is where the homeserver calls the appservice; every request
// there must carry the hs_token.
const appPrefix = "/_matrix/app/"

// Handler is the listener's front: every request body is capped; every
// request under /_matrix/app/ must carry hsToken (Authorization: Bearer, or
// the deprecated access_token query parameter) before anything of it is
// read; transactions go to the journal and everything else (mautrix's
// other appservice endpoints, provisioning, RCS webhooks) to rest.
func Handler(hsToken string, maxBody int64, j *Journal, rest http.Handler, log *zap.Logger) http.Handler {
	if rest == nil {
		rest = http.NotFoundHandler()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT "+appPrefix+"v1/transactions/{txnID}", j.PutTransaction)
	mux.Handle("/", rest)
	auth := &authenticator{token: []byte(hsToken), log: log}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, appPrefix) && !auth.check(w, r) {
			return
		}
		if maxBody > 0 {
			if r.ContentLength > maxBody {
				w.Header().Set("Connection", "close")
				writeError(w, http.StatusRequestEntityTooLarge, "M_TOO_LARGE", fmt.Sprintf("the body is over %d bytes", maxBody))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		mux.ServeHTTP(w, r)
	})
}

// authenticator checks the homeserver's token and rate-limits the log
// lines about requests without it, so a flood of them is not a log flood.
type authenticator struct {
	token []byte
	log   *zap.Logger

	mu         sync.Mutex
	lastLog    time.Time
	suppressed int
}

// check answers 401 (no token) or 403 (a wrong token) and reports false,
// as the appservice API says, without reading the body. A homeserver may
// send the token both ways; then both must match. A token given only in
// the query is copied to the Authorization header, where mautrix looks.
func (a *authenticator) check(w http.ResponseWriter, r *http.Request) bool {
	header, inHeader := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	query := r.URL.Query().Get("access_token")
	switch {
	case !inHeader && query == "":
		a.refused(r, "no token")
		writeError(w, http.StatusUnauthorized, "M_UNAUTHORIZED", "this endpoint needs the homeserver's token")
		return false
	case inHeader && !a.matches(header), query != "" && !a.matches(query):
		a.refused(r, "wrong token")
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "the token is not the homeserver's")
		return false
	}
	if !inHeader {
		r.Header.Set("Authorization", "Bearer "+query)
	}
	return true
}

func (a *authenticator) matches(tok string) bool {
	return subtle.ConstantTimeCompare([]byte(tok), a.token) == 1
}

// refused logs a refused request at most once a minute, with how many
// were not logged since.
func (a *authenticator) refused(r *http.Request, why string) {
	a.mu.Lock()
	now := time.Now()
	if now.Sub(a.lastLog) < time.Minute {
		a.suppressed++
		a.mu.Unlock()
		return
	}
	n := a.suppressed
	a.lastLog, a.suppressed = now, 0
	a.mu.Unlock()
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	a.log.Warn("refused an appservice request without the homeserver's token", zap.String("reason", why),
		zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.String("remote", host), zap.Int("refused_unlogged", n))
}

// writeError writes a Matrix error body.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"errcode": code, "error": msg})
}

// Server is the appservice listener's HTTP server. Listen starts it; Close
// stops it. Its Serve goroutine is owned by the Server.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Listen listens on network ("tcp" or "unix") and addr and serves h with
// the limits until Close. It fails at once when the address is not usable.
func Listen(network, addr string, h http.Handler, l Limits, log *zap.Logger) (*Server, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	s := &Server{srv: srv, ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Error("failed to serve the appservice listener", zap.Error(err))
		}
	}()
	log.Info("started the appservice listener", zap.String("address", ln.Addr().String()))
	return s, nil
}

// Addr is where the server listens.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops accepting requests, lets running ones finish until ctx ends,
// and waits for the serve goroutine.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
