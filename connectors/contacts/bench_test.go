package contacts_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bubbled/bubbled/connectors/contacts"
)

// BenchmarkSyncParse measures one sync's CPU work for a 5,000-contact
// address book: decode the vCards and build the book (two numbers each).
func BenchmarkSyncParse(b *testing.B) {
	var sb strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&sb, "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Person %d\r\nTEL;TYPE=CELL:+1201555%04d\r\nTEL:(202) 555-%04d\r\nEND:VCARD\r\n", i, i, i)
	}
	text := sb.String()
	b.ReportAllocs()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		cards, err := contacts.ReadCards(strings.NewReader(text))
		if err != nil {
			b.Fatal(err)
		}
		book, _ := contacts.FromCards(cards, "US")
		if len(book) != 10000 {
			b.Fatalf("book has %d numbers", len(book))
		}
	}
}

// BenchmarkSyncUnchanged measures a sync of an unchanged 5,000-contact
// file, the usual case: the syncer parses no number again.
func BenchmarkSyncUnchanged(b *testing.B) {
	var sb strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&sb, "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Person %d\r\nTEL;TYPE=CELL:+1201555%04d\r\nTEL:(202) 555-%04d\r\nEND:VCARD\r\n", i, i, i)
	}
	path := filepath.Join(b.TempDir(), "c.vcf")
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	s := contacts.New(contacts.Options{Region: "US", Sources: []contacts.Source{&contacts.File{Path: path}}})
	if err := s.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Sync(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	if len(s.Book()) != 10000 {
		b.Fatalf("book has %d numbers", len(s.Book()))
	}
}
