package mms

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// FuzzDecode: no input panics; whatever decodes re-encodes to bytes that
// decode again and re-encode identically (the codec is a fixed point after
// one normalisation).
func FuzzDecode(f *testing.F) {
	for _, v := range loadVectors(f) {
		if v.Hex != "" {
			b, _ := hex.DecodeString(v.Hex)
			f.Add(b)
		}
	}
	if b, err := Encode(samplePicture()); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if push, err := DecodePush(b); err == nil {
			b = push.Body
		}
		p, err := Decode(b)
		if err != nil {
			return
		}
		enc, err := Encode(p)
		if err != nil {
			return
		}
		p2, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded PDU does not decode: %v\n%X", err, enc)
		}
		enc2, err := Encode(p2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable: %v\n%X\n%X", err, enc, enc2)
		}
	})
}
