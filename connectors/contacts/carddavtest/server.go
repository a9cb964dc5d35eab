// Package carddavtest is a CardDAV server for tests: go-webdav's own
// carddav.Handler over an in-memory address book, on 127.0.0.1, behind
// HTTP basic auth. Tests change the cards while it runs and can take it
// down or make it refuse the credentials.
package carddavtest

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-vcard"
	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/carddav"
)

// The server's layout: one user, one address book.
const (
	PrincipalPath = "/alice/"
	HomePath      = "/alice/contacts/"
	BookPath      = "/alice/contacts/default/"
)

// Server is a running CardDAV server. Its methods are safe for concurrent use.
type Server struct {
	srv        *httptest.Server
	user, pass string

	mu      sync.Mutex
	cards   map[string]vcard.Card // object path -> card
	refuse  bool
	down    bool
	queries int
}

// New starts a server on 127.0.0.1 that accepts user:pass.
func New(user, pass string) *Server {
	s := &Server{user: user, pass: pass, cards: map[string]vcard.Card{}}
	h := &carddav.Handler{Backend: &backend{s: s}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		down, refuse := s.down, s.refuse
		if r.Method == "REPORT" {
			s.queries++
		}
		s.mu.Unlock()
		if down {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		u, p, ok := r.BasicAuth()
		if refuse || !ok || subtle.ConstantTimeCompare([]byte(u), []byte(s.user)) != 1 || subtle.ConstantTimeCompare([]byte(p), []byte(s.pass)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="carddavtest"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	return s
}

// URL is the server's base URL.
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Put stores (or replaces) the contact uid with a name and phone numbers.
func (s *Server) Put(uid, name string, numbers ...string) {
	card := vcard.Card{}
	card.SetValue(vcard.FieldVersion, "3.0")
	card.SetValue(vcard.FieldUID, uid)
	card.SetValue(vcard.FieldFormattedName, name)
	for _, n := range numbers {
		card.AddValue(vcard.FieldTelephone, n)
	}
	s.PutCard(uid, card)
}

// PutCard stores a card as given.
func (s *Server) PutCard(uid string, card vcard.Card) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cards[BookPath+uid+".vcf"] = card
}

// Delete removes the contact uid.
func (s *Server) Delete(uid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.cards, BookPath+uid+".vcf")
}

// SetDown makes every request fail with 503 (true) or work again.
func (s *Server) SetDown(down bool) { s.mu.Lock(); s.down = down; s.mu.Unlock() }

// SetRefuse makes every request fail with 401 (true) or work again.
func (s *Server) SetRefuse(refuse bool) { s.mu.Lock(); s.refuse = refuse; s.mu.Unlock() }

// Queries counts the address-book REPORTs served.
func (s *Server) Queries() int { s.mu.Lock(); defer s.mu.Unlock(); return s.queries }

// backend is the carddav.Backend over the server's map.
type backend struct{ s *Server }

func (b *backend) CurrentUserPrincipal(ctx context.Context) (string, error) {
	return PrincipalPath, nil
}
func (b *backend) AddressBookHomeSetPath(ctx context.Context) (string, error) {
	return HomePath, nil
}

func (b *backend) book() carddav.AddressBook {
	return carddav.AddressBook{Path: BookPath, Name: "Contacts",
		SupportedAddressData: []carddav.AddressDataType{{ContentType: vcard.MIMEType, Version: "3.0"}, {ContentType: vcard.MIMEType, Version: "4.0"}}}
}

func (b *backend) ListAddressBooks(ctx context.Context) ([]carddav.AddressBook, error) {
	return []carddav.AddressBook{b.book()}, nil
}

func (b *backend) GetAddressBook(ctx context.Context, p string) (*carddav.AddressBook, error) {
	if path.Clean(p) != path.Clean(BookPath) {
		return nil, webdav.NewHTTPError(http.StatusNotFound, fmt.Errorf("no address book %s", p))
	}
	ab := b.book()
	return &ab, nil
}

func (b *backend) CreateAddressBook(ctx context.Context, ab *carddav.AddressBook) error {
	return webdav.NewHTTPError(http.StatusForbidden, fmt.Errorf("read-only"))
}

func (b *backend) DeleteAddressBook(ctx context.Context, p string) error {
	return webdav.NewHTTPError(http.StatusForbidden, fmt.Errorf("read-only"))
}

func (b *backend) GetAddressObject(ctx context.Context, p string, req *carddav.AddressDataRequest) (*carddav.AddressObject, error) {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	card, ok := b.s.cards[p]
	if !ok {
		return nil, webdav.NewHTTPError(http.StatusNotFound, fmt.Errorf("no card %s", p))
	}
	return &carddav.AddressObject{Path: p, ModTime: time.Unix(0, 0), ETag: fmt.Sprint(len(card)), Card: card}, nil
}

func (b *backend) ListAddressObjects(ctx context.Context, p string, req *carddav.AddressDataRequest) ([]carddav.AddressObject, error) {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	keys := make([]string, 0, len(b.s.cards))
	for k := range b.s.cards {
		if strings.HasPrefix(k, path.Clean(p)+"/") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([]carddav.AddressObject, 0, len(keys))
	for _, k := range keys {
		out = append(out, carddav.AddressObject{Path: k, ModTime: time.Unix(0, 0), ETag: fmt.Sprint(len(b.s.cards[k])), Card: b.s.cards[k]})
	}
	return out, nil
}

func (b *backend) QueryAddressObjects(ctx context.Context, p string, q *carddav.AddressBookQuery) ([]carddav.AddressObject, error) {
	all, err := b.ListAddressObjects(ctx, p, &q.DataRequest)
	if err != nil {
		return nil, err
	}
	return carddav.Filter(q, all)
}

func (b *backend) PutAddressObject(ctx context.Context, p string, card vcard.Card, opts *carddav.PutAddressObjectOptions) (*carddav.AddressObject, error) {
	b.s.mu.Lock()
	b.s.cards[p] = card
	b.s.mu.Unlock()
	return b.GetAddressObject(ctx, p, nil)
}

func (b *backend) DeleteAddressObject(ctx context.Context, p string) error {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	delete(b.s.cards, p)
	return nil
}
