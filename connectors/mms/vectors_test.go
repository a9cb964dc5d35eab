package mms

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/bubbled/bubbled/connectors/sms/pdu"
)

// vector is one line of testdata/mms.jsonl (copied from
// ../shared/vectors/mms.jsonl; see its README).
type vector struct {
	ID      string   `json:"id"`
	Kind    string   `json:"kind"`
	Hex     string   `json:"hex"`
	PDUs    []string `json:"pdus"`
	HasSMSC bool     `json:"has_smsc"`
	Expect  struct {
		DCS    string `json:"dcs"`
		Concat *struct {
			Ref16 int `json:"ref16"`
			Total int `json:"total"`
		} `json:"concat"`
		Ports *struct {
			Destination int `json:"destination"`
			Source      int `json:"source"`
		} `json:"ports"`
		PayloadBytes int `json:"payload_bytes"`
		WSP          *struct {
			TID         int    `json:"tid"`
			PDUType     string `json:"pdu_type"`
			ContentType string `json:"content_type"`
		} `json:"wsp"`
		MMS struct {
			MessageType        string `json:"message_type"`
			TransactionID      string `json:"transaction_id"`
			Version            string `json:"version"`
			From               string `json:"from"`
			Subject            string `json:"subject"`
			MessageClass       string `json:"message_class"`
			MessageSize        uint64 `json:"message_size"`
			ContentLocation    string `json:"content_location"`
			Status             string `json:"status"`
			ResponseStatus     string `json:"response_status"`
			ResponseStatusCode int    `json:"response_status_code"`
			MessageID          string `json:"message_id"`
			Expiry             *struct {
				RelativeSeconds int `json:"relative_seconds"`
			} `json:"expiry"`
		} `json:"mms"`
	} `json:"expect"`
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	f, err := os.Open("testdata/mms.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []vector
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v vector
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("bad vector line: %v", err)
		}
		out = append(out, v)
	}
	if len(out) != 6 {
		t.Fatalf("loaded %d vectors, want 6", len(out))
	}
	return out
}

// reassemble decodes SMS-DELIVER parts with the SMS connector's PDU
// decoder and joins their 8-bit payloads in sequence order, checking the
// SMS-level expectations on the way.
func reassemble(t *testing.T, v vector) []byte {
	t.Helper()
	type part struct {
		seq  uint8
		data []byte
	}
	var parts []part
	for i, h := range v.PDUs {
		m, err := pdu.Decode(h, v.HasSMSC)
		if err != nil {
			t.Fatalf("SMS part %d: %v", i+1, err)
		}
		if got := hex.EncodeToString([]byte{m.DCS}); got != v.Expect.DCS {
			t.Errorf("SMS part %d: DCS %s, want %s", i+1, got, v.Expect.DCS)
		}
		if m.Alphabet != pdu.EightBit || m.Concat == nil {
			t.Fatalf("SMS part %d: alphabet %v concat %v, want 8-bit concatenated", i+1, m.Alphabet, m.Concat)
		}
		if int(m.Concat.Ref) != v.Expect.Concat.Ref16 || int(m.Concat.Total) != v.Expect.Concat.Total || m.Concat.RefBits != 16 {
			t.Errorf("SMS part %d: concat %+v, want ref16 %d total %d", i+1, *m.Concat, v.Expect.Concat.Ref16, v.Expect.Concat.Total)
		}
		dst, src, ok := ports(m.UDH)
		if !ok || dst != v.Expect.Ports.Destination || src != v.Expect.Ports.Source {
			t.Errorf("SMS part %d: ports %d/%d (found %v), want %d/%d", i+1, dst, src, ok, v.Expect.Ports.Destination, v.Expect.Ports.Source)
		}
		parts = append(parts, part{m.Concat.Seq, m.Data})
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].seq < parts[j].seq })
	var b []byte
	for _, p := range parts {
		b = append(b, p.data...)
	}
	return b
}

// ports finds the 16-bit application port IE (0x05) in a raw UDH.
func ports(udh []byte) (dst, src int, ok bool) {
	for i := 1; i+1 < len(udh); {
		id, n := udh[i], int(udh[i+1])
		if id == 0x05 && n == 4 && i+6 <= len(udh) {
			return int(udh[i+2])<<8 | int(udh[i+3]), int(udh[i+4])<<8 | int(udh[i+5]), true
		}
		i += 2 + n
	}
	return 0, 0, false
}

func TestVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.ID, func(t *testing.T) {
			var raw []byte
			switch v.Kind {
			case "sms-deliver-parts":
				raw = reassemble(t, v)
				if len(raw) != v.Expect.PayloadBytes {
					t.Errorf("payload %d bytes, want %d", len(raw), v.Expect.PayloadBytes)
				}
			case "wsp-push", "mms-pdu":
				var err error
				if raw, err = hex.DecodeString(v.Hex); err != nil {
					t.Fatal(err)
				}
			default:
				t.Fatalf("unknown kind %q", v.Kind)
			}
			body := raw
			if w := v.Expect.WSP; w != nil {
				push, err := DecodePush(raw)
				if err != nil {
					t.Fatal(err)
				}
				if int(push.TID) != w.TID || push.Confirmed || push.ContentType != w.ContentType || !push.IsMMS() {
					t.Errorf("push %+v, want tid %d type %s", push, w.TID, w.ContentType)
				}
				if push.AppID != "4" {
					t.Errorf("application id %q, want 4 (mms.ua)", push.AppID)
				}
				body = push.Body
			}
			p, err := Decode(body)
			if err != nil {
				t.Fatal(err)
			}
			checkVector(t, v, p)
			// Re-encoding reproduces the wire bytes: our header order is the
			// one these senders used (push2's lying Content-Length sits in
			// the WSP headers, not in the MMS PDU).
			enc, err := Encode(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, body) {
				t.Errorf("re-encoded\n%X\nwant\n%X", enc, body)
			}
		})
	}
}

func checkVector(t *testing.T, v vector, p *PDU) {
	t.Helper()
	e := v.Expect.MMS
	check := func(field string, got, want any) {
		if got != want {
			t.Errorf("%s = %v, want %v", field, got, want)
		}
	}
	check("message_type", p.Type.String(), e.MessageType)
	check("transaction_id", p.TransactionID, e.TransactionID)
	check("version", p.Version.String(), e.Version)
	check("from", p.From, e.From)
	check("subject", p.Subject, e.Subject)
	check("message_class", p.Class, e.MessageClass)
	check("message_size", p.Size, e.MessageSize)
	check("content_location", p.ContentLocation, e.ContentLocation)
	check("message_id", p.MessageID, e.MessageID)
	if e.Status != "" {
		check("status", p.Status.String(), e.Status)
	}
	if e.ResponseStatus != "" {
		check("response_status", p.ResponseStatus.String(), e.ResponseStatus)
	}
	if e.ResponseStatusCode != 0 {
		check("response_status_code", int(p.ResponseStatus), e.ResponseStatusCode)
	}
	if e.Expiry != nil {
		check("expiry", p.Expiry.After, time.Duration(e.Expiry.RelativeSeconds)*time.Second)
	}
}
