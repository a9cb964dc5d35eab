package mmscfake

import (
	"errors"
	"fmt"
)

// This file is the fake's own, deliberately minimal MMS codec, written from
// OMA-MMS-ENC separately from connectors/mms so that a bug shared by
// bubbled's encoder and decoder cannot hide in a round trip. It knows the
// headers an MMSC reads from a client and writes to it, nothing more.

// header is one decoded header: its code and raw value bytes.
type header struct {
	code byte
	val  []byte
}

// parsed is a client PDU split into headers and body.
type parsed struct {
	headers []header
	body    []byte // after Content-Type (whose value is in headers)
}

func (p *parsed) all(code byte) [][]byte {
	var out [][]byte
	for _, h := range p.headers {
		if h.code == code {
			out = append(out, h.val)
		}
	}
	return out
}

func (p *parsed) one(code byte) []byte {
	if v := p.all(code); len(v) > 0 {
		return v[0]
	}
	return nil
}

// split cuts b into headers, each value by the WSP generic rules (length
// prefix, NUL-terminated text or one octet), stopping after Content-Type.
func split(b []byte) (*parsed, error) {
	p := &parsed{}
	i := 0
	for i < len(b) {
		code := b[i]
		if code < 0x80 {
			return nil, fmt.Errorf("octet 0x%02X at %d is not a well-known header", code, i)
		}
		i++
		n, err := valueLen(b, i)
		if err != nil {
			return nil, fmt.Errorf("header 0x%02X: %w", code, err)
		}
		p.headers = append(p.headers, header{code: code, val: b[i : i+n]})
		i += n
		if code == 0x84 {
			p.body = b[i:]
			break
		}
	}
	if len(p.headers) < 3 || p.headers[0].code != 0x8C || p.headers[1].code != 0x98 && p.headers[1].code != 0x8D {
		return nil, errors.New("PDU does not start with Message-Type then Transaction-Id/Version")
	}
	return p, nil
}

// valueLen is the encoded length of the value at b[i:].
func valueLen(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("no value")
	}
	c := b[i]
	switch {
	case c >= 0x80:
		return 1, nil
	case c < 31:
		if i+1+int(c) > len(b) {
			return 0, errors.New("value beyond the end")
		}
		return 1 + int(c), nil
	case c == 31:
		v, n := 0, 1
		for ; i+n < len(b); n++ {
			v = v<<7 | int(b[i+n]&0x7F)
			if b[i+n]&0x80 == 0 {
				break
			}
		}
		n++
		if i+n+v > len(b) {
			return 0, errors.New("value beyond the end")
		}
		return n + v, nil
	}
	for j := i; j < len(b); j++ {
		if b[j] == 0 {
			return j - i + 1, nil
		}
	}
	return 0, errors.New("text without NUL")
}

// text reads a Text-string or the text of an Encoded-string-value
// (charset dropped; the fake only compares ASCII addresses and UTF-8).
func text(v []byte) string {
	if len(v) > 0 && v[0] < 31 {
		v = v[1:] // value length
		if len(v) > 0 && v[0] >= 0x80 {
			v = v[1:] // short charset
		}
	}
	if len(v) > 0 && v[0] == 0x7F {
		v = v[1:]
	}
	if len(v) > 0 && v[len(v)-1] == 0 {
		v = v[:len(v)-1]
	}
	return string(v)
}

// uvar reads a uintvar at b[*i].
func uvar(b []byte, i *int) (int, error) {
	v := 0
	for n := 0; n < 5; n++ {
		if *i >= len(b) {
			return 0, errors.New("uintvar beyond the end")
		}
		c := b[*i]
		*i++
		v = v<<7 | int(c&0x7F)
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, errors.New("uintvar too long")
}

// rawPart is one multipart entry as the fake sees it.
type rawPart struct {
	headers []byte // content type and part headers, undecoded
	data    []byte
}

func multipart(b []byte) ([]rawPart, error) {
	i := 0
	n, err := uvar(b, &i)
	if err != nil {
		return nil, err
	}
	var out []rawPart
	for k := 0; k < n; k++ {
		hl, err := uvar(b, &i)
		if err != nil {
			return nil, err
		}
		dl, err := uvar(b, &i)
		if err != nil {
			return nil, err
		}
		if i+hl+dl > len(b) {
			return nil, fmt.Errorf("part %d runs past the end", k+1)
		}
		out = append(out, rawPart{headers: b[i : i+hl], data: b[i+hl : i+hl+dl]})
		i += hl + dl
	}
	return out, nil
}

// builder writes the PDUs the fake sends.
type builder []byte

func (b *builder) octet(code, v byte) { *b = append(*b, code, v) }

func (b *builder) str(code byte, s string) {
	*b = append(*b, code)
	*b = append(*b, s...)
	*b = append(*b, 0)
}

func (b *builder) long(code byte, v uint64) {
	var tmp []byte
	for ; v > 0; v >>= 8 {
		tmp = append([]byte{byte(v)}, tmp...)
	}
	if len(tmp) == 0 {
		tmp = []byte{0}
	}
	*b = append(*b, code, byte(len(tmp)))
	*b = append(*b, tmp...)
}

// lenPrefixed writes code, a Value-length and v.
func (b *builder) lenPrefixed(code byte, v []byte) {
	*b = append(*b, code)
	if len(v) <= 30 {
		*b = append(*b, byte(len(v)))
	} else {
		*b = append(*b, 31)
		*b = appendUvar(*b, len(v))
	}
	*b = append(*b, v...)
}

func appendUvar(b []byte, v int) []byte {
	var tmp []byte
	tmp = append(tmp, byte(v&0x7F))
	for v >>= 7; v > 0; v >>= 7 {
		tmp = append([]byte{byte(v&0x7F) | 0x80}, tmp...)
	}
	return append(b, tmp...)
}
