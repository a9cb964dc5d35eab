package mms

import (
	"fmt"
	"strings"
)

// wellKnownMedia is the WSP content-type assignment table (WAP-230
// Appendix A, Table 40) up to 0x4B.
var wellKnownMedia = [...]string{
	"*/*", "text/*", "text/html", "text/plain", "text/x-hdml", "text/x-ttml", "text/x-vCalendar", "text/x-vCard",
	"text/vnd.wap.wml", "text/vnd.wap.wmlscript", "text/vnd.wap.wta-event", "multipart/*", "multipart/mixed",
	"multipart/form-data", "multipart/byterantes", "multipart/alternative", "application/*", "application/java-vm",
	"application/x-www-form-urlencoded", "application/x-hdmlc", "application/vnd.wap.wmlc",
	"application/vnd.wap.wmlscriptc", "application/vnd.wap.wta-eventc", "application/vnd.wap.uaprof",
	"application/vnd.wap.wtls-ca-certificate", "application/vnd.wap.wtls-user-certificate",
	"application/x-x509-ca-cert", "application/x-x509-user-cert", "image/*", "image/gif", "image/jpeg", "image/tiff",
	"image/png", "image/vnd.wap.wbmp", "application/vnd.wap.multipart.*", "application/vnd.wap.multipart.mixed",
	"application/vnd.wap.multipart.form-data", "application/vnd.wap.multipart.byteranges",
	"application/vnd.wap.multipart.alternative", "application/xml", "text/xml", "application/vnd.wap.wbxml",
	"application/x-x968-cross-cert", "application/x-x968-ca-cert", "application/x-x968-user-cert",
	"text/vnd.wap.si", "application/vnd.wap.sic", "text/vnd.wap.sl", "application/vnd.wap.slc", "text/vnd.wap.co",
	"application/vnd.wap.coc", "application/vnd.wap.multipart.related", "application/vnd.wap.sia",
	"text/vnd.wap.connectivity-xml", "application/vnd.wap.connectivity-wbxml", "application/pkcs7-mime",
	"application/vnd.wap.hashed-certificate", "application/vnd.wap.signed-certificate",
	"application/vnd.wap.cert-response", "application/xhtml+xml", "application/wml+xml", "text/css",
	"application/vnd.wap.mms-message", "application/vnd.wap.rollover-certificate", "application/vnd.wap.locc+wbxml",
	"application/vnd.wap.loc+xml", "application/vnd.syncml.dm+wbxml", "application/vnd.syncml.dm+xml",
	"application/vnd.syncml.notification", "application/vnd.wap.xhtml+xml", "application/vnd.wv.csp.cir",
	"application/vnd.oma.dd+xml", "application/vnd.oma.drm.message", "application/vnd.oma.drm.content",
	"application/vnd.oma.drm.rights+xml", "application/vnd.oma.drm.rights+wbxml",
}

// Media types bubbled names in code.
const (
	MediaMMS            = "application/vnd.wap.mms-message"
	MediaRelated        = "application/vnd.wap.multipart.related"
	MediaMixed          = "application/vnd.wap.multipart.mixed"
	MediaSMIL           = "application/smil"
	MediaText           = "text/plain"
	MediaVCard          = "text/x-vCard"
	wellKnownMMSMessage = 0x3E
)

var mediaCode = func() map[string]byte {
	m := make(map[string]byte, len(wellKnownMedia))
	for i, s := range wellKnownMedia {
		m[strings.ToLower(s)] = byte(i)
	}
	return m
}()

// IsMultipart reports whether media is a multipart type (WSP or MIME name).
func IsMultipart(media string) bool {
	m := strings.ToLower(media)
	return strings.HasPrefix(m, "multipart/") || strings.HasPrefix(m, "application/vnd.wap.multipart.")
}

// ContentType is a decoded WSP Content-type value with the parameters MMS
// uses.
type ContentType struct {
	Media   string // e.g. "image/jpeg", MediaRelated
	Charset int    // MIBenum; 0 = not given
	Name    string // name or filename parameter
	Start   string // multipart/related start (a Content-ID)
	Type    string // multipart/related type (the start part's media)
	Unknown int    // parameters skipped
}

// contentType reads a Content-type-value: short-int, text, or
// Value-length + media + parameters.
func (r *reader) contentType() (ContentType, error) {
	var ct ContentType
	c, err := r.peek()
	if err != nil {
		return ct, err
	}
	if c >= 0x80 {
		r.i++
		ct.Media = mediaName(uint64(c & 0x7F))
		return ct, nil
	}
	if c > 31 || c == 0 {
		ct.Media, err = r.text()
		return ct, err
	}
	n, err := r.valueLength()
	if err != nil {
		return ct, err
	}
	v, err := r.sub(n)
	if err != nil {
		return ct, err
	}
	if c, err = v.peek(); err != nil {
		return ct, fmt.Errorf("empty content type: %w", err)
	}
	if c < 0x80 && c > 31 {
		ct.Media, _ = v.text()
	} else {
		code, err := v.integer()
		if err != nil {
			return ct, fmt.Errorf("media: %w", err)
		}
		ct.Media = mediaName(code)
	}
	for v.left() > 0 {
		if err := v.param(&ct); err != nil {
			return ct, fmt.Errorf("content type %s parameter: %w", ct.Media, err)
		}
	}
	return ct, nil
}

func mediaName(code uint64) string {
	if code < uint64(len(wellKnownMedia)) {
		return wellKnownMedia[code]
	}
	return fmt.Sprintf("application/x-wsp-0x%02x", code)
}

// param reads one Parameter into ct.
func (r *reader) param(ct *ContentType) error {
	c, err := r.peek()
	if err != nil {
		return err
	}
	if c < 0x80 && c > 31 {
		// Untyped parameter: token-text name, then integer or text value.
		name, _ := r.text()
		val, err := r.untypedValue()
		if err != nil {
			return err
		}
		ct.set(strings.ToLower(name), val)
		return nil
	}
	code, err := r.integer()
	if err != nil {
		return err
	}
	switch code {
	case 0x01: // charset: well-known integer or text
		if c, _ := r.peek(); c >= 0x80 || c <= 30 {
			v, err := r.integer()
			ct.Charset = int(v)
			return err
		}
		name, _ := r.text()
		ct.Charset = charsetByName(name)
		return nil
	case 0x05, 0x06, 0x17, 0x18:
		ct.Name, _ = r.text()
	case 0x09:
		ct.Type, _ = r.text()
	case 0x0A, 0x19:
		ct.Start, _ = r.text()
	default:
		ct.Unknown++
		_, err := r.untypedValue()
		return err
	}
	return nil
}

func (r *reader) untypedValue() (string, error) {
	c, err := r.peek()
	if err != nil {
		return "", err
	}
	if c >= 0x80 || (c >= 1 && c <= 30) {
		v, err := r.integer()
		return fmt.Sprint(v), err
	}
	return r.text()
}

func (ct *ContentType) set(name, val string) {
	switch name {
	case "charset":
		ct.Charset = charsetByName(val)
	case "name", "filename":
		ct.Name = val
	case "start":
		ct.Start = val
	case "type":
		ct.Type = val
	default:
		ct.Unknown++
	}
}

func charsetByName(s string) int {
	switch strings.ToLower(s) {
	case "utf-8", "utf8":
		return CharsetUTF8
	case "us-ascii":
		return CharsetUSASCII
	case "iso-8859-1", "latin1":
		return CharsetLatin1
	case "utf-16":
		return CharsetUTF16
	case "iso-10646-ucs-2":
		return CharsetUCS2
	}
	return 0
}

// contentType writes ct in the shortest form that holds its parameters.
func (w *writer) contentType(ct ContentType) error {
	code, known := mediaCode[strings.ToLower(ct.Media)]
	if ct.Charset == 0 && ct.Name == "" && ct.Start == "" && ct.Type == "" {
		if known {
			w.byte(0x80 | code)
			return nil
		}
		return w.text(ct.Media)
	}
	var v writer
	if known {
		v.byte(0x80 | code)
	} else if err := v.text(ct.Media); err != nil {
		return err
	}
	if ct.Charset != 0 {
		v.byte(0x81)
		v.integer(uint64(ct.Charset))
	}
	if ct.Type != "" {
		v.byte(0x89)
		if err := v.text(ct.Type); err != nil {
			return err
		}
	}
	if ct.Start != "" {
		v.byte(0x8A)
		if err := v.text(ct.Start); err != nil {
			return err
		}
	}
	if ct.Name != "" {
		v.byte(0x85)
		if err := v.text(ct.Name); err != nil {
			return err
		}
	}
	w.valueLength(len(v.b))
	w.b = append(w.b, v.b...)
	return nil
}
