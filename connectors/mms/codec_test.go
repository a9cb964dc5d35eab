package mms

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// samplePicture is an m-retrieve-conf like a phone sends to a group: SMIL,
// a JPEG and a UTF-8 text, Cc'd members.
func samplePicture() *PDU {
	smil := `<smil><body><par><img src="pic.jpg"/><text src="text.txt"/></par></body></smil>`
	return &PDU{
		Type: RetrieveConf, TransactionID: "T1", Version: Version12, MessageID: "msg-1",
		Date: time.Unix(1201657238, 0).UTC(), From: PLMN("+15551230001"),
		To: []string{PLMN("+15551230000"), PLMN("+15551230002")}, Cc: []string{PLMN("+15551230003")},
		Subject: "Grüße", Class: "personal", Priority: 0x81,
		ContentType: ContentType{Media: MediaRelated, Type: MediaSMIL, Start: "<smil>"},
		Parts: []Part{
			{ContentType: ContentType{Media: MediaSMIL}, ContentID: "smil", Data: []byte(smil)},
			{ContentType: ContentType{Media: "image/jpeg", Name: "pic.jpg"}, ContentID: "pic", ContentLocation: "pic.jpg", Data: bytes.Repeat([]byte{0xFF, 0xD8, 0x01}, 300)},
			{ContentType: ContentType{Media: MediaText, Charset: CharsetUTF8}, ContentID: "text", ContentLocation: "text.txt", Data: []byte("Hallo Oma 👋")},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	cases := map[string]*PDU{
		"retrieve-conf": samplePicture(),
		"send-req group": {Type: SendReq, TransactionID: "abc", FromInsert: true,
			To: []string{PLMN("+33612345678"), PLMN("+33612345679")}, DeliveryReport: 0x80,
			ContentType: ContentType{Media: MediaRelated, Type: MediaSMIL, Start: "<smil>"},
			Parts:       []Part{{ContentType: ContentType{Media: MediaText, Charset: CharsetUTF8}, ContentID: "t", Data: []byte("hi all")}}},
		"notification absolute expiry": {Type: NotificationInd, TransactionID: "x", From: PLMN("+4477"),
			Class: "informational", Size: 1 << 20, Expiry: Expiry{At: time.Unix(2000000000, 0).UTC()}, ContentLocation: "http://mmsc/x"},
		"delivery-ind":      {Type: DeliveryInd, MessageID: "m9", To: []string{PLMN("+4477")}, Date: time.Unix(5, 0).UTC(), Status: StatusRetrieved},
		"acknowledge-ind":   {Type: AcknowledgeInd, TransactionID: "ack", ReportAllowed: 0x81},
		"send-conf refused": {Type: SendConf, TransactionID: "t", ResponseStatus: 0xE5, ResponseText: "too big"},
		"long subject":      {Type: SendReq, TransactionID: "l", Subject: strings.Repeat("ä", 40), FromInsert: true},
	}
	for name, p := range cases {
		t.Run(name, func(t *testing.T) {
			b, err := Encode(p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("decode %X: %v", b, err)
			}
			if got.Version == 0 || p.Version == 0 {
				got.Version, p.Version = 0, 0
			}
			if p.Type == SendReq {
				p.FromInsert = true
			}
			if !reflect.DeepEqual(got, p) {
				t.Errorf("round trip\n got %+v\nwant %+v", got, p)
			}
		})
	}
}

func TestPartText(t *testing.T) {
	cases := []struct {
		name string
		cs   int
		data []byte
		want string
	}{
		{"utf-8 with BOM", CharsetUTF8, []byte("\xEF\xBB\xBFhello"), "hello"},
		{"latin-1", CharsetLatin1, []byte{'G', 0xFC, 'n'}, "Gün"},
		{"utf-16 BE with BOM", CharsetUTF16, []byte{0xFE, 0xFF, 0, 'h', 0xD8, 0x3D, 0xDC, 0x4B}, "h👋"},
		{"ucs-2 LE BOM", CharsetUCS2, []byte{0xFF, 0xFE, 'o', 0, 'k', 0}, "ok"},
		{"unknown charset invalid bytes", 0, []byte{'a', 0xFF}, "a\uFFFD"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Part{ContentType: ContentType{Charset: c.cs}, Data: c.data}.Text()
			if got != c.want {
				t.Errorf("Text() = %q, want %q", got, c.want)
			}
		})
	}
}

// TestSendReqPrefixes decodes the headers of the two real send-req prefixes
// of notes/mms.md §7 V5 (their bodies are not in the note, so the test
// ends them with an empty multipart).
func TestSendReqPrefixes(t *testing.T) {
	group := unhex(t, "8C809830303030303030303030303200 8D90 890181 972B33333631323334353637382F545950453D504C4D4E00 972B33333631323334353637392F545950453D504C4D4E00 841BB389 6170706C69636174696F6E2F736D696C00 8A3C534D494C3E00"+" 00")
	p, err := Decode(group)
	if err != nil {
		t.Fatal(err)
	}
	if !p.FromInsert || len(p.To) != 2 || Number(p.To[0]) != "+33612345678" || Number(p.To[1]) != "+33612345679" ||
		p.ContentType.Media != MediaRelated || p.ContentType.Type != MediaSMIL || p.ContentType.Start != "<SMIL>" {
		t.Errorf("group send-req decoded as %+v", p)
	}
	iphone := unhex(t, "8C809831323632393537333536 2D3300 8D92 97108331333337 2F545950453D504C4D4E00 890181 841BB389 6170706C69636174696F6E2F736D696C00 8A302E736D696C00"+" 00")
	p, err = Decode(iphone)
	if err != nil {
		t.Fatal(err)
	}
	if p.TransactionID != "1262957356-3" || len(p.To) != 1 || p.To[0] != "1337/TYPE=PLMN" || p.ContentType.Start != "0.smil" {
		t.Errorf("iPhone send-req decoded as %+v", p)
	}
}

func TestLenientParts(t *testing.T) {
	// One entry: text/plain with "81 83" (us-ascii) after the content type
	// as a separate header, a Content-ID without <>, an unknown header
	// (0xC5 Content-Disposition) and a text-named header.
	var h writer
	h.byte(0x83)
	h.b = append(h.b, 0x81, 0x83, 0xC0, '"')
	_ = h.text("id1")
	h.b = append(h.b, 0xC5, 0x02, 0x81, 0x00)
	_ = h.text("X-Custom")
	_ = h.text("y")
	var w writer
	w.uintvar(1)
	w.uintvar(uint32(len(h.b)))
	w.uintvar(2)
	w.b = append(w.b, h.b...)
	w.b = append(w.b, "hi"...)
	parts, err := decodeMultipart(w.b)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 1 || parts[0].ContentID != "id1" || parts[0].ContentType.Charset != CharsetUSASCII || parts[0].Text() != "hi" {
		t.Errorf("parts = %+v", parts)
	}
}

func TestDecodeErrors(t *testing.T) {
	good, err := Encode(samplePicture())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "not an MMS PDU"},
		{"sms text", []byte("hello"), "not an MMS PDU"},
		{"unknown type", []byte{0x8C, 0xA0}, "unknown X-Mms-Message-Type"},
		{"truncated", good[:len(good)-10], "multipart entry 3/3: data"},
		{"bad from token", unhex(t, "8C82 8902 8261"), "From token 0x82"},
		{"bad expiry token", unhex(t, "8C82 8803 820101"), "expiry token 0x82"},
		{"huge part count", unhex(t, "8C84 84A3 8F7F"), "multipart claims"},
		{"value length beyond end", unhex(t, "8C82 891F20"), "exceeds"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.in)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Decode error = %v, want it to mention %q", err, c.want)
			}
		})
	}
	if _, err := Decode(good[:len(good)-10]); !errors.Is(err, ErrTruncated) {
		t.Errorf("truncated PDU error %v does not wrap ErrTruncated", err)
	}
}

func TestEncodeRejectsNUL(t *testing.T) {
	_, err := Encode(&PDU{Type: NotifyRespInd, TransactionID: "a\x00b", Status: StatusRetrieved})
	if err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("Encode error = %v, want a NUL complaint", err)
	}
}

func TestPushErrorsAndOtherContent(t *testing.T) {
	if _, err := DecodePush([]byte{1, 0x40, 0}); !errors.Is(err, ErrNotPush) {
		t.Errorf("non-push error = %v", err)
	}
	// An SI push (0xAE application/vnd.wap.sic) is recognised as not MMS.
	p, err := DecodePush([]byte{7, 0x06, 0x01, 0xAE, 0x02, 0x05})
	if err != nil || p.IsMMS() || p.ContentType != "application/vnd.wap.sic" {
		t.Errorf("SI push = %+v, %v", p, err)
	}
	// The well-known short form 0xBE is MMS too.
	p, err = DecodePush(append([]byte{3, 0x06, 0x01, 0xBE}, 0x8C, 0x82))
	if err != nil || !p.IsMMS() || !bytes.Equal(p.Body, []byte{0x8C, 0x82}) {
		t.Errorf("short-form push = %+v, %v", p, err)
	}
	enc := EncodePush(9, []byte{0x8C, 0x83})
	p, err = DecodePush(enc)
	if err != nil || !p.IsMMS() || p.TID != 9 || p.AppID != "4" || !bytes.Equal(p.Body, []byte{0x8C, 0x83}) {
		t.Errorf("EncodePush round trip = %+v, %v", p, err)
	}
}

func TestNumber(t *testing.T) {
	for in, want := range map[string]string{"+4477/TYPE=PLMN": "+4477", "1337/type=plmn": "1337", "a@b.c": "a@b.c", " +1 ": "+1"} {
		if got := Number(in); got != want {
			t.Errorf("Number(%q) = %q, want %q", in, got, want)
		}
	}
}
