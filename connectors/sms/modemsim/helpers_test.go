package modemsim

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/warthog618/sms"
	"github.com/warthog618/sms/encoding/pdumode"
	"github.com/warthog618/sms/encoding/tpdu"
	"go.bug.st/serial"
)

const ioTimeout = 3 * time.Second

// host is the test's side of the serial line: the pty slave opened with
// go.bug.st/serial, driven with plain writes and reads.
type host struct {
	t    *testing.T
	sim  *Sim
	port serial.Port
	rest []byte // bytes read beyond the last expectation
}

func startSim(t *testing.T, opts Options) *Sim {
	t.Helper()
	sim, err := Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

func newHost(t *testing.T, opts Options) *host {
	t.Helper()
	sim := startSim(t, opts)
	return openHost(t, sim)
}

func openHost(t *testing.T, sim *Sim) *host {
	t.Helper()
	port, err := serial.Open(sim.Path(), &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatalf("open %s: %v", sim.Path(), err)
	}
	t.Cleanup(func() { port.Close() })
	if err := port.SetReadTimeout(50 * time.Millisecond); err != nil {
		t.Fatalf("set read timeout: %v", err)
	}
	return &host{t: t, sim: sim, port: port}
}

func (h *host) send(s string) {
	h.t.Helper()
	if _, err := h.port.Write([]byte(s)); err != nil {
		h.t.Fatalf("write %q: %v", s, err)
	}
}

// read returns at least n bytes (or fewer at the deadline).
func (h *host) read(n int, d time.Duration) []byte {
	h.t.Helper()
	got := h.rest
	h.rest = nil
	deadline := time.Now().Add(d)
	buf := make([]byte, 4096)
	for len(got) < n && time.Now().Before(deadline) {
		k, err := h.port.Read(buf)
		if err != nil {
			h.t.Fatalf("read after %q: %v", got, err)
		}
		got = append(got, buf[:k]...)
	}
	return got
}

// expect reads exactly the bytes of want and fails on any difference.
func (h *host) expect(want string) {
	h.t.Helper()
	got := h.read(len(want), ioTimeout)
	if len(got) > len(want) {
		h.rest = got[len(want):]
		got = got[:len(want)]
	}
	if string(got) != want {
		h.t.Fatalf("read %q, want %q", got, want)
	}
}

// quiet fails if anything arrives within d.
func (h *host) quiet(d time.Duration) {
	h.t.Helper()
	if got := h.read(1, d); len(got) > 0 {
		h.t.Fatalf("read %q, want nothing", got)
	}
}

// cmd sends a command line and expects the exact response.
func (h *host) cmd(line, want string) {
	h.t.Helper()
	h.send(line)
	h.expect(want)
}

// submitPDUs encodes an SMS-SUBMIT (split when long) with warthog618/sms
// and returns the PDU-mode hex ("00" SMSC field + TPDU) and TPDU lengths.
func submitPDUs(t *testing.T, enc *sms.Encoder, to, text string, srr bool) ([]string, []int) {
	t.Helper()
	tpdus, err := enc.Encode([]byte(text), sms.To(to))
	if err != nil {
		t.Fatalf("encode submit: %v", err)
	}
	var hexes []string
	var lens []int
	for _, p := range tpdus {
		b, err := p.MarshalBinary()
		if err != nil {
			t.Fatalf("marshal submit: %v", err)
		}
		if srr {
			b[0] |= 0x20 // TP-SRR
		}
		hexes = append(hexes, strings.ToUpper("00"+hex.EncodeToString(b)))
		lens = append(lens, len(b))
	}
	return hexes, lens
}

// decodeMT decodes one mobile-terminated PDU (with SMSC field).
func decodeMT(t *testing.T, h string) *tpdu.TPDU {
	t.Helper()
	pd, err := pdumode.UnmarshalHexString(h)
	if err != nil {
		t.Fatalf("unmarshal PDU %q: %v", h, err)
	}
	tp, err := sms.Unmarshal(pd.TPDU, sms.AsMT)
	if err != nil {
		t.Fatalf("unmarshal TPDU %q: %v", h, err)
	}
	return tp
}

func decodeText(t *testing.T, pdus ...string) string {
	t.Helper()
	var segs []*tpdu.TPDU
	for _, p := range pdus {
		segs = append(segs, decodeMT(t, p))
	}
	b, err := sms.Decode(segs)
	if err != nil {
		t.Fatalf("decode text: %v", err)
	}
	return string(b)
}

// readURC reads one "\r\n<head>\r\n[<pdu>\r\n]" unsolicited result code
// with a PDU line and returns the head and the PDU.
func (h *host) readURCWithPDU() (string, string) {
	h.t.Helper()
	deadline := time.Now().Add(ioTimeout)
	var got []byte
	for time.Now().Before(deadline) {
		got = append(got, h.read(1, time.Until(deadline))...)
		parts := strings.Split(string(got), "\r\n")
		// "", head, pdu, "" ...
		if len(parts) >= 4 {
			if parts[0] != "" {
				h.t.Fatalf("URC %q does not start with CRLF", got)
			}
			consumed := len("\r\n" + parts[1] + "\r\n" + parts[2] + "\r\n")
			h.rest = append([]byte(nil), got[consumed:]...)
			return parts[1], parts[2]
		}
	}
	h.t.Fatalf("read %q, want a URC with a PDU line", got)
	return "", ""
}

func cmgsFrame(mr int) string { return fmt.Sprintf("\r\n+CMGS: %d\r\n\r\nOK\r\n", mr) }

func containsLine(b []byte, line string) bool { return bytes.Contains(b, []byte(line)) }

// tpduLen is the +CMGR/+CMT <length>: the PDU's octets after the SMSC field.
func tpduLen(t *testing.T, h string) int {
	t.Helper()
	pd, err := pdumode.UnmarshalHexString(h)
	if err != nil {
		t.Fatalf("unmarshal PDU %q: %v", h, err)
	}
	return len(pd.TPDU)
}
