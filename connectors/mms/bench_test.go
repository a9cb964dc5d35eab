package mms

import (
	"bytes"
	"testing"
)

// benchPicture is a 300 KiB picture MMS, the common carrier limit.
func benchPicture() *PDU {
	p := samplePicture()
	p.Parts[1].Data = bytes.Repeat([]byte{0xFF, 0xD8, 0x42, 0x17}, 300*1024/4)
	return p
}

func BenchmarkDecodeRetrieveConf(b *testing.B) {
	enc, err := Encode(benchPicture())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeRetrieveConf(b *testing.B) {
	p := benchPicture()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeNotification(b *testing.B) {
	v := loadVectors(b)[1]
	raw := unhex(b, v.Hex)
	b.ReportAllocs()
	for b.Loop() {
		push, err := DecodePush(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Decode(push.Body); err != nil {
			b.Fatal(err)
		}
	}
}
