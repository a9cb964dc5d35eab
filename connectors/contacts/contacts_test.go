package contacts_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-vcard"
	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream" // registers the sqlite3-fk-wal driver

	"github.com/bubbled/bubbled/connectors/contacts"
	"github.com/bubbled/bubbled/connectors/contacts/carddavtest"
)

func TestFromCards(t *testing.T) {
	const text = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ann Lee\r\nTEL;TYPE=CELL:(201) 555-0123\r\nTEL:+44 20 7946 0958\r\n" +
		"PHOTO;ENCODING=b;TYPE=PNG:iVBORw0KGgo=\r\nEND:VCARD\r\n" +
		"BEGIN:VCARD\r\nVERSION:4.0\r\nN:Doe;John;Q;;\r\nTEL;VALUE=uri:tel:+1-201-555-0199\r\nPHOTO:data:image/jpeg;base64,/9j/4AAQ\r\nEND:VCARD\r\n" +
		"BEGIN:VCARD\r\nVERSION:3.0\r\nORG:ACME Bank;Branch\r\nTEL:+12015550177\r\nTEL:not a number\r\nEND:VCARD\r\n" +
		"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Second Ann\r\nTEL:+12015550123\r\nEND:VCARD\r\n" +
		"BEGIN:VCARD\r\nVERSION:3.0\r\nTEL:+12015550166\r\nEND:VCARD\r\n"
	cards, err := contacts.ReadCards(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	book, problems := contacts.FromCards(cards, "US")
	cases := []struct {
		name, number, want, photoType string
	}{
		{"national number in the default region", "+12015550123", "Ann Lee", "image/png"},
		{"foreign number", "+442079460958", "Ann Lee", "image/png"},
		{"vCard 4 tel URI and N", "+12015550199", "John Q Doe", "image/jpeg"},
		{"ORG when there is no name", "+12015550177", "ACME Bank", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := book.Lookup(tc.number)
			if !ok || c.Name != tc.want || c.PhotoType != tc.photoType {
				t.Errorf("Lookup(%s) = %+v, %v; want %q with photo %q", tc.number, c, ok, tc.want, tc.photoType)
			}
		})
	}
	if _, ok := book.Lookup("+12015550166"); ok {
		t.Errorf("a card without any name got into the book")
	}
	if len(book) != 4 {
		t.Errorf("book has %d numbers, want 4: %v", len(book), book)
	}
	if len(problems) != 1 || !strings.Contains(problems[0], "ACME Bank") {
		t.Errorf("problems = %q, want one about ACME Bank's bad number", problems)
	}
}

func TestChanged(t *testing.T) {
	old := contacts.Book{"+1": {Name: "A"}, "+2": {Name: "B"}, "+3": {Name: "C", Photo: []byte{1}}}
	next := contacts.Book{"+1": {Name: "A"}, "+2": {Name: "B2"}, "+3": {Name: "C", Photo: []byte{2}}, "+4": {Name: "D"}}
	if got, want := contacts.Changed(old, next), []string{"+2", "+3", "+4"}; !slices.Equal(got, want) {
		t.Errorf("Changed = %v, want %v", got, want)
	}
	if got := contacts.Changed(next, contacts.Book{}); len(got) != 4 {
		t.Errorf("removing all reports %v", got)
	}
}

func newDB(t *testing.T) *dbutil.Database {
	t.Helper()
	db, err := dbutil.NewWithDialect("file:"+filepath.Join(t.TempDir(), "c.db")+"?_txlock=immediate", "sqlite3-fk-wal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := contacts.Upgrade(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return db
}

type changes struct {
	mu  sync.Mutex
	got [][]string
}

func (c *changes) record(_ context.Context, numbers []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, numbers)
}

func (c *changes) last() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.got) == 0 {
		return nil
	}
	return c.got[len(c.got)-1]
}

// TestCardDAVSync reads go-webdav's own CardDAV server over HTTP with basic
// auth: a rename shows after the next sync; a server that is down or
// refuses the password keeps the last good names, also across a restart.
func TestCardDAVSync(t *testing.T) {
	ctx := context.Background()
	srv := carddavtest.New("alice", "app-password")
	defer srv.Close()
	srv.Put("ann", "Ann Lee", "+12015550123")
	srv.Put("bob", "Bob", "201-555-0188")
	db := newDB(t)
	ch := &changes{}
	newSyncer := func(pass string) *contacts.Syncer {
		return contacts.New(contacts.Options{
			Sources:  []contacts.Source{&contacts.CardDAV{URL: srv.URL() + "/", Username: "alice", Password: pass}},
			Region:   "US",
			Store:    contacts.NewDBStore(db),
			OnChange: ch.record,
		})
	}
	s := newSyncer("app-password")
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Lookup("+12015550188"); c.Name != "Bob" {
		t.Fatalf("Bob's national number did not match: %+v", s.Book())
	}
	srv.Put("ann", "Ann Lee-Smith", "+12015550123")
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Lookup("+12015550123"); c.Name != "Ann Lee-Smith" {
		t.Errorf("after the rename Ann is %q", c.Name)
	}
	if got := ch.last(); !slices.Equal(got, []string{"+12015550123"}) {
		t.Errorf("the rename reported %v as changed", got)
	}

	srv.SetDown(true)
	if err := s.Sync(ctx); err == nil {
		t.Errorf("a server that is down gave no error")
	}
	if c, _ := s.Lookup("+12015550123"); c.Name != "Ann Lee-Smith" {
		t.Errorf("a server that is down lost Ann's name: %+v", c)
	}
	srv.SetDown(false)
	if err := newSyncer("wrong").Sync(ctx); !errors.Is(err, contacts.ErrUnauthorized) {
		t.Errorf("a wrong password gave %v, want ErrUnauthorized", err)
	}

	// A restart while the server refuses us still knows the stored names.
	srv.SetRefuse(true)
	restarted := newSyncer("app-password")
	if err := restarted.Load(ctx); err != nil {
		t.Fatal(err)
	}
	_ = restarted.Sync(ctx)
	if c, _ := restarted.Lookup("+12015550123"); c.Name != "Ann Lee-Smith" {
		t.Errorf("after a restart with the server refusing, Ann is %+v", c)
	}
}

// TestFileSource: a broken vCard file keeps the last good names; the
// CardDAV source wins a number both have.
func TestFileSource(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "contacts.vcf")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Carol\r\nTEL:+12015550111\r\nEND:VCARD\r\nBEGIN:VCARD\r\nVERSION:3.0\r\nFN:File Ann\r\nTEL:+12015550123\r\nEND:VCARD\r\n")
	srv := carddavtest.New("u", "p")
	defer srv.Close()
	srv.Put("ann", "Server Ann", "+12015550123")
	s := contacts.New(contacts.Options{Region: "US", Sources: []contacts.Source{
		&contacts.CardDAV{URL: srv.URL(), Username: "u", Password: "p"}, &contacts.File{Path: path}}})
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Lookup("+12015550123"); c.Name != "Server Ann" {
		t.Errorf("the first source should win a shared number, got %q", c.Name)
	}
	write("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Carol\r\nTEL:+1201555")
	if err := s.Sync(ctx); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Errorf("a truncated file gave %v, want a broken-vCard error", err)
	}
	if c, _ := s.Lookup("+12015550111"); c.Name != "Carol" {
		t.Errorf("a broken file lost Carol: %+v", c)
	}
}

func FuzzReadCards(f *testing.F) {
	f.Add("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nTEL:+12015550123\r\nPHOTO:data:image/png;base64,AAAA\r\nEND:VCARD\r\n")
	f.Add("BEGIN:VCARD\r\nN:;;;;\r\nEND:VCARD\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		cards, err := contacts.ReadCards(strings.NewReader(s))
		if err != nil {
			return
		}
		_, _ = contacts.FromCards(cards, "US")
	})
}

var _ = vcard.FieldTelephone

// TestSyncerLoop: Start first publishes the stored names, then syncs on
// its interval until Stop.
func TestSyncerLoop(t *testing.T) {
	ctx := context.Background()
	srv := carddavtest.New("u", "p")
	defer srv.Close()
	db := newDB(t)
	if err := contacts.NewDBStore(db).Save(ctx, "carddav", contacts.Book{"+12015550123": {Name: "Stored Ann"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	srv.SetDown(true)
	got := make(chan []string, 16)
	s := contacts.New(contacts.Options{
		Sources:  []contacts.Source{&contacts.CardDAV{URL: srv.URL(), Username: "u", Password: "p"}},
		Region:   "US",
		Interval: 20 * time.Millisecond,
		Store:    contacts.NewDBStore(db),
		OnChange: func(_ context.Context, changed []string) { got <- changed },
	})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	wait := func(what string) {
		t.Helper()
		select {
		case <-got:
		case <-time.After(30 * time.Second):
			t.Fatalf("no change for %s", what)
		}
	}
	wait("the stored names")
	if c, _ := s.Lookup("+12015550123"); c.Name != "Stored Ann" {
		t.Fatalf("stored name not loaded: %+v", c)
	}
	srv.SetDown(false)
	srv.Put("ann", "Server Ann", "+12015550123")
	wait("the server's names")
	if c, _ := s.Lookup("+12015550123"); c.Name != "Server Ann" {
		t.Errorf("after the server came back Ann is %+v", c)
	}
	s.Stop()
	n := srv.Queries()
	time.Sleep(100 * time.Millisecond)
	if srv.Queries() != n {
		t.Errorf("the syncer kept querying after Stop")
	}
}
