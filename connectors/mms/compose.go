package mms

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"html"
	"strings"
)

// Attachment is one file to send.
type Attachment struct {
	Name  string
	Media string
	Data  []byte
}

// NewSendReq builds the m-send-req of one message to every number in to
// (a group send is one request, never one per recipient): insert-address
// From, a To per recipient, multipart/related with SMIL first, the
// attachments (images shrunk to fit maxSize) and the text as UTF-8.
// It fails with ErrTooLarge when the encoded request would exceed maxSize.
func NewSendReq(to []string, text string, files []Attachment, maxSize int) (*PDU, error) {
	if len(to) == 0 {
		return nil, fmt.Errorf("MMS without recipients")
	}
	var tid [8]byte
	if _, err := rand.Read(tid[:]); err != nil {
		return nil, err
	}
	p := &PDU{Type: SendReq, TransactionID: "bubbled-" + hex.EncodeToString(tid[:]), FromInsert: true,
		ContentType: ContentType{Media: MediaRelated, Type: MediaSMIL, Start: "<smil>"}}
	for _, n := range to {
		p.To = append(p.To, PLMN(n))
	}
	// What the headers, SMIL and text take leaves the budget for files.
	budget := maxSize - 1024 - len(text)
	var smil strings.Builder
	smil.WriteString(`<smil><head><layout><region id="Image" top="0" left="0" height="80%" width="100%"/><region id="Text" top="80%" left="0" height="20%" width="100%"/></layout></head><body><par dur="5000ms">`)
	var parts []Part
	for i, f := range files {
		data, media, err := ShrinkImage(f.Data, f.Media, budget/max(1, len(files)-i))
		if err != nil {
			return nil, fmt.Errorf("attachment %q: %w", f.Name, err)
		}
		budget -= len(data)
		name := f.Name
		if media != f.Media {
			name = strings.TrimSuffix(name, extOf(name)) + ".jpg"
		}
		cid := fmt.Sprintf("part%d", i+1)
		fmt.Fprintf(&smil, `<%s src="%s" region="Image"/>`, smilTag(media), html.EscapeString(name))
		parts = append(parts, Part{ContentType: ContentType{Media: media, Name: name}, ContentID: cid, ContentLocation: name, Data: data})
	}
	if text != "" {
		smil.WriteString(`<text src="text.txt" region="Text"/>`)
		parts = append(parts, Part{ContentType: ContentType{Media: MediaText, Charset: CharsetUTF8}, ContentID: "text", ContentLocation: "text.txt", Data: []byte(text)})
	}
	smil.WriteString(`</par></body></smil>`)
	p.Parts = append([]Part{{ContentType: ContentType{Media: MediaSMIL}, ContentID: "smil", ContentLocation: "smil.xml", Data: []byte(smil.String())}}, parts...)
	enc, err := Encode(p)
	if err != nil {
		return nil, err
	}
	if len(enc) > maxSize {
		return nil, fmt.Errorf("message is %d bytes, over network.mms.max_size %d: %w", len(enc), maxSize, ErrTooLarge)
	}
	return p, nil
}

func extOf(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i:]
	}
	return ""
}

func smilTag(media string) string {
	switch {
	case strings.HasPrefix(media, "image/"):
		return "img"
	case strings.HasPrefix(media, "video/"):
		return "video"
	case strings.HasPrefix(media, "audio/"):
		return "audio"
	}
	return "ref"
}
