package pdu

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// vectorsRel is where the shared test vectors live relative to the parent
// of the repository root (shared/ is the repository's sibling).
const vectorsRel = "shared/vectors/sms-pdu.jsonl"

// vector is one line of sms-pdu.jsonl (see shared/vectors/README.md).
type vector struct {
	ID         string            `json:"id"`
	Direction  string            `json:"direction"`
	PDU        string            `json:"pdu"`
	HasSMSC    bool              `json:"has_smsc"`
	Expect     json.RawMessage   `json:"expect"`
	Disputed   string            `json:"disputed"`
	DecodeWith map[string]string `json:"decode_with"`
	Group      string            `json:"group"`
	GroupSize  int               `json:"group_size"`
	GroupText  *string           `json:"group_text"`
	Tags       []string          `json:"tags"`
}

// isReject reports whether the vector expects Decode to fail.
func (v vector) isReject() bool {
	var s string
	return json.Unmarshal(v.Expect, &s) == nil && s == "reject"
}

// findVectors walks up from the package directory looking for
// shared/vectors/sms-pdu.jsonl beside the repository root.
func findVectors(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatalf("get working directory: %v", err)
	}
	for {
		p := filepath.Join(dir, vectorsRel)
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func loadVectors(tb testing.TB) []vector {
	tb.Helper()
	p := findVectors(tb)
	if p == "" {
		tb.Skipf("!!!!! SKIPPING: %s NOT FOUND above the package directory; the shared SMS PDU vectors are NOT being checked. "+
			"Put a copy of shared/ beside the repository root. !!!!!", vectorsRel)
	}
	f, err := os.Open(p)
	if err != nil {
		tb.Fatalf("open vectors: %v", err)
	}
	defer f.Close()
	var vs []vector
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var v vector
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			tb.Fatalf("%s line %d: %v", p, line, err)
		}
		vs = append(vs, v)
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("read vectors: %v", err)
	}
	if len(vs) == 0 {
		tb.Fatalf("%s holds no vectors", p)
	}
	return vs
}

// knownExceptions lists, per vector id and expect field, where this package
// deliberately disagrees with a vector, and why. The test fails if an
// exception no longer applies, so the table stays minimal.
var knownExceptions = map[string]map[string]string{
	"ofono/charset-turkish-single": {
		"text": "the vector's Turkish tables are passed out of band (decode_with) and the PDU carries no national " +
			"language IE; Decode honours only the tables a PDU signals in its UDH (TS 23.040), so it reads the default " +
			"alphabet. TestVectorsOutOfBandTables checks the same septets give the expected text with the Turkish tables.",
	},
}

// unsupportedFields are expect fields Message does not carry.
var unsupportedFields = map[string]string{
	"smsc_type_of_address": "Message has no SMSC type-of-address; the SMSC's international form shows as the leading +",
	"validity_period":      "Message has no TP-VP; only SMS-SUBMITs read back from storage carry one and the bridge does not use it",
}

// checkExpect compares m with the vector's expectations and returns one
// message per mismatching field, keyed by field.
func checkExpect(t *testing.T, v vector, m *Message) map[string]string {
	t.Helper()
	var exp map[string]json.RawMessage
	if err := json.Unmarshal(v.Expect, &exp); err != nil {
		t.Fatalf("expect is not an object: %v", err)
	}
	bad := map[string]string{}
	str := func(raw json.RawMessage) (string, bool) { // ok=false for null
		var s *string
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatalf("not a string: %s", raw)
		}
		if s == nil {
			return "", false
		}
		return *s, true
	}
	num := func(raw json.RawMessage) (int, bool) {
		var n *int
		if err := json.Unmarshal(raw, &n); err != nil {
			t.Fatalf("not a number: %s", raw)
		}
		if n == nil {
			return 0, false
		}
		return *n, true
	}
	hexByte := func(field string, raw json.RawMessage, got byte) {
		s, _ := str(raw)
		if want := fmt.Sprintf("%02X", got); !strings.EqualFold(s, want) {
			bad[field] = fmt.Sprintf("got %s, want %s", want, s)
		}
	}
	timeField := func(field string, raw json.RawMessage, got time.Time) {
		s, _ := str(raw)
		if g := got.Format(time.RFC3339); g != s {
			bad[field] = fmt.Sprintf("got %s, want %s", g, s)
		}
	}
	for key, raw := range exp {
		switch key {
		case "smsc":
			s, _ := str(raw)
			if m.SMSC != s {
				bad[key] = fmt.Sprintf("got %q, want %q", m.SMSC, s)
			}
		case "first_octet":
			hexByte(key, raw, m.FirstOctet)
		case "sender_or_recipient":
			if s, _ := str(raw); m.Address != s {
				bad[key] = fmt.Sprintf("got %q, want %q", m.Address, s)
			}
		case "type_of_address":
			hexByte(key, raw, m.TOA)
		case "message_reference":
			if n, _ := num(raw); m.MR != n {
				bad[key] = fmt.Sprintf("got %d, want %d", m.MR, n)
			}
		case "pid":
			hexByte(key, raw, m.PID)
		case "dcs":
			hexByte(key, raw, m.DCS)
		case "timestamp":
			timeField(key, raw, m.SCTS)
		case "discharge_time":
			timeField(key, raw, m.Discharge)
		case "status":
			if n, _ := num(raw); int(m.Status) != n {
				bad[key] = fmt.Sprintf("got %d, want %d", m.Status, n)
			}
		case "alphabet":
			if s, _ := str(raw); m.Alphabet.String() != s {
				bad[key] = fmt.Sprintf("got %s, want %s", m.Alphabet, s)
			}
		case "class":
			n, ok := num(raw)
			if !ok {
				n = -1
			}
			if m.Class != n {
				bad[key] = fmt.Sprintf("got %d, want %d", m.Class, n)
			}
		case "text":
			if s, _ := str(raw); m.Text != s {
				bad[key] = fmt.Sprintf("got %q, want %q", m.Text, s)
			}
		case "data_hex":
			s, _ := str(raw)
			if g := strings.ToUpper(hex.EncodeToString(m.Data)); g != strings.ToUpper(s) {
				bad[key] = fmt.Sprintf("got %s, want %s", g, s)
			}
		case "udh":
			checkUDH(t, raw, m, bad)
		default:
			if _, ok := unsupportedFields[key]; !ok {
				t.Errorf("vector has expect field %q this test does not know; add it to checkExpect or unsupportedFields", key)
			}
		}
	}
	return bad
}

func checkUDH(t *testing.T, raw json.RawMessage, m *Message, bad map[string]string) {
	t.Helper()
	var u struct {
		Raw    string `json:"raw"`
		Concat *struct {
			Ref     int `json:"ref"`
			Total   int `json:"total"`
			Seq     int `json:"seq"`
			RefBits int `json:"ref_bits"`
		} `json:"concat"`
	}
	if err := json.Unmarshal(raw, &u); err != nil {
		t.Fatalf("udh: %v", err)
	}
	// port, national_*_shift and other_ies are all inside udh.raw, which is
	// compared octet for octet.
	if g := strings.ToUpper(hex.EncodeToString(m.UDH)); g != strings.ToUpper(u.Raw) {
		bad["udh.raw"] = fmt.Sprintf("got %s, want %s", g, u.Raw)
	}
	switch {
	case u.Concat == nil && m.Concat != nil:
		bad["udh.concat"] = fmt.Sprintf("got %+v, want none", *m.Concat)
	case u.Concat != nil && m.Concat == nil:
		bad["udh.concat"] = fmt.Sprintf("got none, want %+v", *u.Concat)
	case u.Concat != nil:
		got := Concat{Ref: uint16(u.Concat.Ref), Total: uint8(u.Concat.Total), Seq: uint8(u.Concat.Seq), RefBits: u.Concat.RefBits}
		if *m.Concat != got {
			bad["udh.concat"] = fmt.Sprintf("got %+v, want %+v", *m.Concat, got)
		}
	}
}

// TestVectors decodes every shared vector and checks every supported
// expect field; reject vectors must fail to decode.
func TestVectors(t *testing.T) {
	vs := loadVectors(t)
	seen := map[string]bool{}
	for _, v := range vs {
		t.Run(v.ID, func(t *testing.T) {
			if seen[v.ID] {
				t.Fatalf("duplicate vector id %s", v.ID)
			}
			seen[v.ID] = true
			exc := knownExceptions[v.ID]
			m, err := Decode(v.PDU, v.HasSMSC)
			if v.isReject() {
				if err == nil {
					if reason, ok := exc["reject"]; ok {
						t.Logf("known exception (accepted although the vector rejects): %s", reason)
						return
					}
					t.Fatalf("Decode accepted a PDU the vector rejects (%s): %+v", v.ID, m)
				}
				t.Logf("rejected as expected: %v", err)
				return
			}
			if err != nil {
				if reason, ok := exc["decode"]; ok {
					t.Logf("known exception (rejected): %s: %v", reason, err)
					return
				}
				t.Fatalf("Decode: %v", err)
			}
			if wantType := map[string]Type{"deliver": Deliver, "submit": Submit, "status-report": StatusReport}[v.Direction]; m.Type != wantType {
				t.Errorf("type: got %v, want %s", m.Type, v.Direction)
			}
			bad := checkExpect(t, v, m)
			for field, reason := range exc {
				if _, still := bad[field]; !still {
					t.Errorf("known exception for %s no longer applies (the field now matches): remove it from knownExceptions (%s)", field, reason)
				}
			}
			for _, field := range slices.Sorted(maps.Keys(bad)) {
				if reason, ok := exc[field]; ok {
					t.Logf("known exception for %s: %s (%s)", field, reason, bad[field])
					continue
				}
				t.Errorf("%s: %s", field, bad[field])
			}
		})
	}
}

// TestVectorsOutOfBandTables decodes the user data of vectors with
// decode_with through the national language tables they name.
func TestVectorsOutOfBandTables(t *testing.T) {
	nli := map[string]int{"turkish": 1, "spanish": 2, "portuguese": 3}
	n := 0
	for _, v := range loadVectors(t) {
		if v.DecodeWith == nil {
			continue
		}
		n++
		t.Run(v.ID, func(t *testing.T) {
			var exp struct {
				Text string `json:"text"`
			}
			if err := json.Unmarshal(v.Expect, &exp); err != nil {
				t.Fatalf("expect: %v", err)
			}
			m, err := Decode(v.PDU, v.HasSMSC)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if m.raw == nil || m.Alphabet != GSM7 {
				t.Fatalf("not a GSM 7-bit message: %+v", m)
			}
			locking, single := nli[v.DecodeWith["national_locking_shift"]], nli[v.DecodeWith["national_single_shift"]]
			if got := decodeSeptets(m.raw.septets, locking, single); got != exp.Text {
				t.Errorf("text with tables %v: got %q, want %q", v.DecodeWith, got, exp.Text)
			}
		})
	}
	if n == 0 {
		t.Log("no vector uses decode_with")
	}
}

// TestVectorGroups joins every concatenated group in the vectors, in
// reverse and in forward order, and compares with group_text.
func TestVectorGroups(t *testing.T) {
	groups := map[string][]vector{}
	var order []string
	for _, v := range loadVectors(t) {
		if v.Group == "" {
			continue
		}
		if _, ok := groups[v.Group]; !ok {
			order = append(order, v.Group)
		}
		groups[v.Group] = append(groups[v.Group], v)
	}
	if len(groups) == 0 {
		t.Fatal("no groups in the vectors")
	}
	for _, g := range order {
		vs := groups[g]
		t.Run(g, func(t *testing.T) {
			var want *string
			var parts []*Message
			for _, v := range vs {
				if v.GroupText != nil {
					want = v.GroupText
				}
				if v.GroupSize != len(vs) {
					t.Fatalf("%s: group_size %d but %d parts in the file", v.ID, v.GroupSize, len(vs))
				}
				m, err := Decode(v.PDU, v.HasSMSC)
				if err != nil {
					t.Fatalf("%s: Decode: %v", v.ID, err)
				}
				parts = append(parts, m)
			}
			if want == nil {
				t.Skip("group has no group_text (8-bit data group)")
			}
			reversed := slices.Clone(parts)
			slices.Reverse(reversed)
			for name, ps := range map[string][]*Message{"forward": parts, "reversed": reversed} {
				got, err := Join(ps)
				if err != nil {
					t.Fatalf("%s: Join: %v", name, err)
				}
				if got != *want {
					t.Errorf("%s: Join: got %q, want %q", name, got, *want)
				}
			}
			if _, err := Join(parts[:len(parts)-1]); err == nil {
				t.Error("Join of an incomplete group succeeded")
			}
		})
	}
}
