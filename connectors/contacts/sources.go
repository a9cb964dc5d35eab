package contacts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"github.com/emersion/go-vcard"
	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/carddav"
)

// Source is one place contacts come from.
type Source interface {
	// Name names the source in logs and in the stored snapshot.
	Name() string
	// Fetch reads every card. An error means the source is unusable this
	// time: the syncer keeps its last good cards.
	Fetch(ctx context.Context) ([]vcard.Card, error)
}

// ErrUnauthorized is returned (wrapped) when the server refuses the credentials.
var ErrUnauthorized = errors.New("the server refused the username or password (HTTP 401/403)")

// CardDAV is a [Source] reading all address books of a CardDAV server with
// go-webdav's carddav client. URL is the server's CardDAV address (the
// current user's address book home is discovered from it) or one address
// book's own URL. Fetch is not safe for concurrent use.
type CardDAV struct {
	URL, Username, Password string
	// HTTP is the client used; nil means a client with a 30s timeout.
	HTTP *http.Client
}

// Name implements Source.
func (s *CardDAV) Name() string { return "carddav" }

// statusClient remembers whether the server refused the credentials:
// go-webdav reports HTTP errors as text only.
type statusClient struct {
	c       webdav.HTTPClient
	refused atomic.Bool
}

func (sc *statusClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := sc.c.Do(req)
	if err == nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
		sc.refused.Store(true)
	}
	return resp, err
}

// Fetch implements Source: PROPFIND discovery, then an addressbook-query
// REPORT asking for whole cards on each address book.
func (s *CardDAV) Fetch(ctx context.Context) ([]vcard.Card, error) {
	hc := s.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: defaultHTTPTimeout}
	}
	var base webdav.HTTPClient = hc
	if s.Username != "" {
		base = webdav.HTTPClientWithBasicAuth(hc, s.Username, s.Password)
	}
	sc := &statusClient{c: base}
	cards, err := s.fetch(ctx, sc)
	if err != nil && sc.refused.Load() {
		return nil, fmt.Errorf("%w: %v", ErrUnauthorized, err)
	}
	return cards, err
}

func (s *CardDAV) fetch(ctx context.Context, hc webdav.HTTPClient) ([]vcard.Card, error) {
	cl, err := carddav.NewClient(hc, s.URL)
	if err != nil {
		return nil, fmt.Errorf("use CardDAV URL: %w", err)
	}
	paths, err := s.addressBooks(ctx, cl)
	if err != nil {
		return nil, err
	}
	var cards []vcard.Card
	for _, p := range paths {
		objs, err := cl.QueryAddressBook(ctx, p, telQuery)
		if err != nil {
			return nil, fmt.Errorf("read address book %s: %w", p, err)
		}
		for _, o := range objs {
			cards = append(cards, o.Card)
		}
	}
	return cards, nil
}

// telQuery asks for whole cards that have a TEL: only those can name a
// number, and an empty filter matches nothing on some servers (go-webdav's).
var telQuery = &carddav.AddressBookQuery{
	DataRequest: carddav.AddressDataRequest{AllProp: true},
	PropFilters: []carddav.PropFilter{{Name: vcard.FieldTelephone}},
}

// addressBooks finds the user's address books; when discovery fails the
// URL itself is taken as the one address book.
func (s *CardDAV) addressBooks(ctx context.Context, cl *carddav.Client) ([]string, error) {
	principal, err := cl.FindCurrentUserPrincipal(ctx)
	if err != nil {
		return nil, fmt.Errorf("find the current user on the CardDAV server: %w", err)
	}
	home, err := cl.FindAddressBookHomeSet(ctx, principal)
	if err != nil {
		return []string{""}, nil
	}
	books, err := cl.FindAddressBooks(ctx, home)
	if err != nil {
		return nil, fmt.Errorf("list address books in %s: %w", home, err)
	}
	out := make([]string, 0, len(books))
	for _, b := range books {
		out = append(out, b.Path)
	}
	return out, nil
}

// File is a [Source] reading a file of vCards, read again at every Fetch.
type File struct{ Path string }

// Name implements Source.
func (f *File) Name() string { return "vcard_file" }

// Fetch implements Source. A card that does not parse fails the whole
// file, so a half-written export never replaces the last good one.
func (f *File) Fetch(ctx context.Context) ([]vcard.Card, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return nil, fmt.Errorf("open vCard file: %w", err)
	}
	defer fh.Close()
	return ReadCards(fh)
}

// ReadCards decodes a stream of vCards.
func ReadCards(r io.Reader) ([]vcard.Card, error) {
	dec := vcard.NewDecoder(r)
	var cards []vcard.Card
	for {
		card, err := dec.Decode()
		if errors.Is(err, io.EOF) {
			return cards, nil
		}
		if err != nil {
			return nil, fmt.Errorf("vCard %d is broken: %w", len(cards)+1, err)
		}
		if strings.TrimSpace(card.Value(vcard.FieldVersion)) == "" && len(card) <= 1 {
			return nil, fmt.Errorf("vCard %d is broken: it has no VERSION", len(cards)+1)
		}
		cards = append(cards, card)
	}
}
