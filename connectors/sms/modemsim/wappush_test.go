package modemsim

import (
	"bytes"
	"testing"

	"github.com/bubbled/bubbled/connectors/sms/pdu"
)

func TestWAPPushPDUs(t *testing.T) {
	sim, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	for _, size := range []int{1, 127, 128, 300} {
		push := bytes.Repeat([]byte{0x01, 0x06, 0x8C, 0x00}, (size+3)/4)[:size]
		parts, err := sim.WAPPushPDUs("+15551230001", push)
		if err != nil {
			t.Fatal(err)
		}
		if want := (size + 126) / 127; len(parts) != want {
			t.Fatalf("%d bytes: %d parts, want %d", size, len(parts), want)
		}
		var got []byte
		for i, h := range parts {
			m, err := pdu.Decode(h, true)
			if err != nil {
				t.Fatalf("%d bytes part %d: %v", size, i+1, err)
			}
			if m.DCS != 0x04 || m.Alphabet != pdu.EightBit || m.Address != "+15551230001" {
				t.Errorf("part %d: dcs %02X alphabet %v from %s", i+1, m.DCS, m.Alphabet, m.Address)
			}
			if m.Concat == nil || m.Concat.RefBits != 16 || int(m.Concat.Seq) != i+1 || int(m.Concat.Total) != len(parts) {
				t.Errorf("part %d: concat %+v", i+1, m.Concat)
			}
			if !bytes.Contains(m.UDH, []byte{0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0}) {
				t.Errorf("part %d: UDH %X lacks ports 2948/9200", i+1, m.UDH)
			}
			got = append(got, m.Data...)
		}
		if !bytes.Equal(got, push) {
			t.Errorf("%d bytes: reassembled %X, want %X", size, got, push)
		}
	}
	if _, err := sim.WAPPushPDUs("+1555", nil); err == nil {
		t.Error("empty push accepted")
	}
}
