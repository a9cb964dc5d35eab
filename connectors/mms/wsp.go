package mms

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrTruncated reports a PDU that ends inside a value.
var ErrTruncated = errors.New("PDU ends inside a value")

// reader walks a WSP-encoded byte string. Every method returns ErrTruncated
// (wrapped) instead of reading past the end.
type reader struct {
	b []byte
	i int
}

func (r *reader) left() int { return len(r.b) - r.i }

func (r *reader) peek() (byte, error) {
	if r.i >= len(r.b) {
		return 0, ErrTruncated
	}
	return r.b[r.i], nil
}

func (r *reader) byte() (byte, error) {
	c, err := r.peek()
	if err == nil {
		r.i++
	}
	return c, err
}

func (r *reader) take(n int) ([]byte, error) {
	if n < 0 || n > r.left() {
		return nil, fmt.Errorf("need %d bytes, %d left: %w", n, r.left(), ErrTruncated)
	}
	out := r.b[r.i : r.i+n]
	r.i += n
	return out, nil
}

// uintvar reads a WSP Uintvar: 7 bits per octet, at most 5 octets.
func (r *reader) uintvar() (uint32, error) {
	var v uint32
	for n := 0; n < 5; n++ {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v = v<<7 | uint32(c&0x7F)
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, errors.New("uintvar longer than 5 octets")
}

// valueLength reads a Value-length: 0..30, or 0x1F then a uintvar.
func (r *reader) valueLength() (int, error) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch {
	case c <= 30:
		return int(c), nil
	case c == 31:
		v, err := r.uintvar()
		if err != nil {
			return 0, err
		}
		if int64(v) > int64(r.left()) {
			return 0, fmt.Errorf("value length %d exceeds the %d bytes left: %w", v, r.left(), ErrTruncated)
		}
		return int(v), nil
	}
	return 0, fmt.Errorf("octet 0x%02X is not a value length", c)
}

// sub returns a reader over the next n bytes and skips them here.
func (r *reader) sub(n int) (*reader, error) {
	b, err := r.take(n)
	if err != nil {
		return nil, err
	}
	return &reader{b: b}, nil
}

// text reads a Text-string (or Quoted-string): bytes up to NUL, a leading
// 0x7F or 0x22 quote dropped. A missing NUL at the very end is tolerated.
func (r *reader) text() (string, error) {
	end := r.i
	for end < len(r.b) && r.b[end] != 0 {
		end++
	}
	s := r.b[r.i:end]
	if end < len(r.b) {
		end++
	}
	r.i = end
	if len(s) > 0 && (s[0] == 0x7F || s[0] == '"') {
		s = s[1:]
	}
	return string(s), nil
}

// longInt reads a Long-integer: a length octet 1..30 then big-endian bytes.
func (r *reader) longInt() (uint64, error) {
	n, err := r.byte()
	if err != nil {
		return 0, err
	}
	if n == 0 || n > 30 {
		return 0, fmt.Errorf("octet 0x%02X is not a long-integer length", n)
	}
	b, err := r.take(int(n))
	if err != nil {
		return 0, err
	}
	if n > 8 {
		return 0, fmt.Errorf("long-integer of %d bytes does not fit 64 bits", n)
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

// integer reads an Integer-value: a Short-integer or a Long-integer.
func (r *reader) integer() (uint64, error) {
	c, err := r.peek()
	if err != nil {
		return 0, err
	}
	if c&0x80 != 0 {
		r.i++
		return uint64(c & 0x7F), nil
	}
	return r.longInt()
}

// encodedString reads an Encoded-string-value and converts it to UTF-8.
func (r *reader) encodedString() (string, error) {
	c, err := r.peek()
	if err != nil {
		return "", err
	}
	if c > 31 || c == 0 {
		s, err := r.text()
		return Decode8(0, []byte(s)), err
	}
	n, err := r.valueLength()
	if err != nil {
		return "", err
	}
	v, err := r.sub(n)
	if err != nil {
		return "", err
	}
	cs, err := v.integer()
	if err != nil {
		return "", fmt.Errorf("charset: %w", err)
	}
	s, _ := v.text()
	return Decode8(int(cs), []byte(s)), nil
}

// skipValue skips one generic WSP header value of an unknown header.
func (r *reader) skipValue() error {
	c, err := r.peek()
	if err != nil {
		return err
	}
	switch {
	case c <= 31:
		n, err := r.valueLength()
		if err != nil {
			return err
		}
		_, err = r.take(n)
		return err
	case c < 0x80:
		_, err := r.text()
		return err
	}
	r.i++
	return nil
}

// Charset MIBenum numbers bubbled converts (IANA character sets).
const (
	CharsetUSASCII = 3
	CharsetLatin1  = 4
	CharsetUTF8    = 106
	CharsetUCS2    = 1000
	CharsetUTF16   = 1015
)

// Decode8 converts text in the charset with MIBenum cs to UTF-8, dropping a
// byte-order mark. Unknown charsets are read as UTF-8 (what real phones
// send), with invalid bytes replaced.
func Decode8(cs int, b []byte) string {
	switch cs {
	case CharsetLatin1:
		rs := make([]rune, len(b))
		for i, c := range b {
			rs[i] = rune(c)
		}
		return string(rs)
	case CharsetUCS2, CharsetUTF16:
		le := len(b) >= 2 && b[0] == 0xFF && b[1] == 0xFE
		if len(b) >= 2 && (le || b[0] == 0xFE && b[1] == 0xFF) {
			b = b[2:]
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			if le {
				u[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
			} else {
				u[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
			}
		}
		return string(utf16.Decode(u))
	}
	s := stripBOM(string(b))
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}

func stripBOM(s string) string { return strings.TrimPrefix(s, "\uFEFF") }

// writer builds a WSP-encoded byte string.
type writer struct{ b []byte }

func (w *writer) byte(c byte) { w.b = append(w.b, c) }

func (w *writer) uintvar(v uint32) {
	var tmp [5]byte
	i := len(tmp) - 1
	tmp[i] = byte(v & 0x7F)
	for v >>= 7; v > 0; v >>= 7 {
		i--
		tmp[i] = byte(v&0x7F) | 0x80
	}
	w.b = append(w.b, tmp[i:]...)
}

func (w *writer) valueLength(n int) {
	if n <= 30 {
		w.byte(byte(n))
		return
	}
	w.byte(31)
	w.uintvar(uint32(n))
}

// text writes a Text-string; NUL cannot be encoded. Besides the 0x7F quote
// WSP requires before an octet >= 0x80, a leading control octet is quoted
// too, so that it is not read back as a value length.
func (w *writer) text(s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("text %q contains a NUL byte", s)
	}
	if len(s) > 0 && (s[0] >= 0x80 || s[0] < 0x20 || s[0] == 0x7F || s[0] == '"') {
		w.byte(0x7F)
	}
	w.b = append(w.b, s...)
	w.byte(0)
	return nil
}

func (w *writer) quoted(s string) error {
	w.byte('"')
	return w.text(s)
}

func (w *writer) longInt(v uint64) {
	var tmp [8]byte
	n := 0
	for x := v; x > 0 || n == 0; x >>= 8 {
		n++
	}
	for i := 0; i < n; i++ {
		tmp[8-n+i] = byte(v >> (8 * (n - 1 - i)))
	}
	w.byte(byte(n))
	w.b = append(w.b, tmp[8-n:]...)
}

func (w *writer) integer(v uint64) {
	if v < 0x80 {
		w.byte(byte(v) | 0x80)
		return
	}
	w.longInt(v)
}

// encodedString writes ASCII as a plain Text-string and anything else as
// UTF-8 with its charset.
func (w *writer) encodedString(s string) error {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return w.text(s)
	}
	var v writer
	v.byte(0x80 | CharsetUTF8)
	if err := v.text(s); err != nil {
		return err
	}
	w.valueLength(len(v.b))
	w.b = append(w.b, v.b...)
	return nil
}
