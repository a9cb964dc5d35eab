// Package contacts reads the operator's contacts (a CardDAV server, a vCard
// file) into a book of names and photos keyed by E.164 number, keeps it in
// sync on an interval and remembers the last good copy of each source, so a
// restart with the server down keeps the names. It imports no bridge code.
package contacts

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"maps"
	"mime"
	"slices"
	"strings"

	"github.com/emersion/go-vcard"

	"github.com/bubbled/bubbled/connectors/phone"
)

// MaxPhotoBytes caps a contact photo; larger photos are left out.
const MaxPhotoBytes = 1 << 20

// Contact is what the book knows about one number.
type Contact struct {
	// Name is the vCard's FN, else its N, ORG or NICKNAME.
	Name string `json:"name"`
	// Photo is the decoded PHOTO (inline data only), or nil.
	Photo []byte `json:"photo,omitempty"`
	// PhotoType is the photo's MIME type, e.g. image/jpeg.
	PhotoType string `json:"photo_type,omitempty"`
}

// Book maps E.164 numbers ("+12015550123") to contacts. A Book is never
// changed after it is made, so it may be shared between goroutines.
type Book map[string]Contact

// Lookup returns the contact of an E.164 number.
func (b Book) Lookup(e164 string) (Contact, bool) {
	c, ok := b[e164]
	return c, ok
}

// Changed lists, sorted, the numbers whose contact differs between old and
// new: added, removed, renamed or with another photo.
func Changed(old, new Book) []string {
	var out []string
	for n, c := range new {
		if o, ok := old[n]; !ok || o.Name != c.Name || o.PhotoType != c.PhotoType || !bytes.Equal(o.Photo, c.Photo) {
			out = append(out, n)
		}
	}
	for n := range old {
		if _, ok := new[n]; !ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// merge lays the books over each other, earlier books winning a number.
func merge(books ...Book) Book {
	out := Book{}
	for i := len(books) - 1; i >= 0; i-- {
		maps.Copy(out, books[i])
	}
	return out
}

// FromCards builds a book from vCards, matching numbers in E.164 with
// region for national forms. Cards without a name or a usable number are
// left out; problems describes each left-out number or photo. When two cards
// share a number the first keeps it.
func FromCards(cards []vcard.Card, region string) (book Book, problems []string) {
	return fromCards(cards, region, func(raw string) (string, error) { return phone.Parse(raw, region) })
}

// fromCards is FromCards with the number parser given, so that a syncer
// can remember numbers it parsed before (most of the work of a sync).
func fromCards(cards []vcard.Card, region string, parse func(string) (string, error)) (book Book, problems []string) {
	book = Book{}
	for _, card := range cards {
		name := cardName(card)
		if name == "" {
			continue
		}
		c := Contact{Name: name}
		photo, ptype, err := cardPhoto(card)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: photo left out: %v", name, err))
		} else {
			c.Photo, c.PhotoType = photo, ptype
		}
		for _, f := range card[vcard.FieldTelephone] {
			raw := strings.TrimPrefix(strings.TrimSpace(f.Value), "tel:")
			e164, err := parse(raw)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: number %s left out: not a phone number in region %s", name, phone.Mask(raw), region))
				continue
			}
			if _, dup := book[e164]; !dup {
				book[e164] = c
			}
		}
	}
	return book, problems
}

func cardName(card vcard.Card) string {
	if fn := strings.TrimSpace(card.PreferredValue(vcard.FieldFormattedName)); fn != "" {
		return fn
	}
	if n := card.Name(); n != nil {
		if s := strings.TrimSpace(strings.Join(strings.Fields(n.GivenName+" "+n.AdditionalName+" "+n.FamilyName), " ")); s != "" {
			return s
		}
	}
	for _, k := range []string{vcard.FieldOrganization, vcard.FieldNickname} {
		if v := strings.TrimSpace(strings.Split(card.PreferredValue(k), ";")[0]); v != "" {
			return v
		}
	}
	return ""
}

// cardPhoto decodes an inline PHOTO: vCard 3's ENCODING=b and vCard 4's
// data: URI. A photo given by URL is not fetched (it could point anywhere).
func cardPhoto(card vcard.Card) ([]byte, string, error) {
	f := card.Preferred(vcard.FieldPhoto)
	if f == nil || f.Value == "" {
		return nil, "", nil
	}
	val, ptype := f.Value, ""
	switch enc := strings.ToLower(f.Params.Get("ENCODING")); {
	case enc == "b" || enc == "base64":
		if t := strings.ToLower(f.Params.Get(vcard.ParamType)); t != "" {
			ptype = mime.TypeByExtension("." + t)
			if ptype == "" {
				ptype = "image/" + t
			}
		}
	case strings.HasPrefix(val, "data:"):
		head, data, ok := strings.Cut(strings.TrimPrefix(val, "data:"), ",")
		if !ok || !strings.HasSuffix(head, ";base64") {
			return nil, "", fmt.Errorf("data URI is not base64")
		}
		ptype, val = strings.TrimSuffix(head, ";base64"), data
	default:
		return nil, "", nil
	}
	if base64.StdEncoding.DecodedLen(len(val)) > MaxPhotoBytes*4/3+4 {
		return nil, "", fmt.Errorf("larger than %d bytes", MaxPhotoBytes)
	}
	b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(val), ""))
	if err != nil {
		return nil, "", fmt.Errorf("bad base64: %w", err)
	}
	if len(b) > MaxPhotoBytes {
		return nil, "", fmt.Errorf("larger than %d bytes", MaxPhotoBytes)
	}
	if ptype == "" {
		ptype = "image/jpeg"
	}
	return b, ptype, nil
}
