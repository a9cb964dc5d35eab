package pdu

import (
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/warthog618/sms"
	"github.com/warthog618/sms/encoding/gsm7/charset"
	"github.com/warthog618/sms/encoding/tpdu"
)

// counter is a fake persisted concat-reference counter.
type counter struct {
	mu    sync.Mutex
	next  uint16
	calls int
}

func (c *counter) NextRef() uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	c.next++
	return c.next
}

// libPDU marshals a TPDU built with warthog618/sms to hex (no SMSC field).
func libPDU(t *testing.T, p tpdu.TPDU) string {
	t.Helper()
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatalf("marshal TPDU: %v", err)
	}
	return hex.EncodeToString(b)
}

// turkishDeliver returns an SMS-DELIVER encoded with the Turkish locking
// shift table, with the national language IE written with IEI iei.
func turkishDeliver(t *testing.T, text string, iei byte) string {
	t.Helper()
	pdus, err := sms.Encode([]byte(text), sms.AsDeliver, sms.From("+905321234567"), sms.WithCharset(charset.Turkish))
	if err != nil || len(pdus) != 1 {
		t.Fatalf("sms.Encode: %d PDUs, %v", len(pdus), err)
	}
	p := pdus[0]
	found := false
	for i := range p.UDH {
		if p.UDH[i].ID == 25 { // what the library writes for a locking shift
			p.UDH[i].ID = iei
			found = true
		}
	}
	if !found {
		t.Fatalf("library wrote no locking shift IE: %+v", p.UDH)
	}
	return libPDU(t, p)
}

// Bug 1: warthog618/sms v0.3.0 reads and writes the national language shift
// IEIs as decimal 24/25 (0x18/0x19, which TS 23.040 assigns to WVG objects)
// instead of 0x24/0x25.
func TestRegressionBug1NationalLanguageIEI(t *testing.T) {
	const turkish = "Şişli'de güzel ığdır"
	t.Run("decode_spec_IEI_0x25_locking_shift", func(t *testing.T) {
		m, err := Decode(turkishDeliver(t, turkish, 0x25), false)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if m.Text != turkish {
			t.Errorf("text: got %q, want %q", m.Text, turkish)
		}
	})
	t.Run("upstream_still_garbles_spec_IEI", func(t *testing.T) {
		// Documents why we decode national tables ourselves; if this starts
		// failing the library was fixed and the work-around could go.
		b, _ := hex.DecodeString(turkishDeliver(t, turkish, 0x25))
		p, err := sms.Unmarshal(b)
		if err != nil {
			t.Fatalf("sms.Unmarshal: %v", err)
		}
		text, err := sms.Decode([]*tpdu.TPDU{p})
		if err != nil {
			t.Fatalf("sms.Decode: %v", err)
		}
		if string(text) == turkish {
			t.Errorf("warthog618/sms now decodes IEI 0x25 correctly; bug 1 is fixed upstream")
		}
	})
	t.Run("decode_ignores_library_IEI_0x19", func(t *testing.T) {
		// 0x19 is "character size WVG object", not a national language IE.
		m, err := Decode(turkishDeliver(t, turkish, 0x19), false)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if m.Text == turkish {
			t.Errorf("IEI 0x19 was taken as a national language locking shift")
		}
	})
	t.Run("decode_spec_IEI_0x24_single_shift_portuguese", func(t *testing.T) {
		// AOSP vector: single shift IE 03 24 01 03; also pins the missing
		// 0x1F 'Ê' of the library's Portuguese single shift table.
		const pdu = "4100068121436500003403240103D8143689CD62C3D838360FC9A462B960329BCF26B8496E9E9BEA66BBE16EC29BF4E6BDA96FF61BFEE60F"
		m, err := Decode(pdu, false)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if want := "êçÔôÁáΦΓΩΠΨΣΘÊÀÍÓÚÃÕÂíóúãõâ"; m.Text != want {
			t.Errorf("text: got %q, want %q", m.Text, want)
		}
		if _, ok := charset.NewExtDecoder(charset.Portuguese)[0x1F]; ok {
			t.Errorf("the library's Portuguese single shift table now has 0x1F; the local fix can go")
		}
	})
	t.Run("encode_never_uses_national_tables", func(t *testing.T) {
		parts, err := EncodeSubmit("+905321234567", turkish, SubmitOptions{})
		if err != nil {
			t.Fatalf("EncodeSubmit: %v", err)
		}
		for _, p := range parts {
			m, err := Decode(p.Hex, true)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if m.Alphabet != UCS2 || m.UDH != nil {
				t.Errorf("got alphabet %v UDH %X, want UCS-2 without UDH", m.Alphabet, m.UDH)
			}
			if m.Text != turkish {
				t.Errorf("text: got %q, want %q", m.Text, turkish)
			}
		}
	})
}

// Bug 2: sms.Encode (and gsm.SendLongMessage) use concat reference 1 for
// every long message. EncodeSubmit takes references from opts.NextRef.
func TestRegressionBug2ConcatRef(t *testing.T) {
	long := strings.Repeat("long message ", 20) // 260 septets: 2 parts
	t.Run("successive_messages_get_distinct_refs", func(t *testing.T) {
		c := &counter{}
		refs := map[uint16]bool{}
		for i := range 3 {
			parts, err := EncodeSubmit("+447700900123", long, SubmitOptions{NextRef: c.NextRef})
			if err != nil {
				t.Fatalf("EncodeSubmit %d: %v", i, err)
			}
			ref := decodeAll(t, parts)[0].Concat.Ref
			if refs[ref] {
				t.Errorf("message %d reuses concat ref %d", i, ref)
			}
			refs[ref] = true
		}
		if c.calls != 3 {
			t.Errorf("NextRef called %d times for 3 long messages, want 3", c.calls)
		}
	})
	t.Run("upstream_still_reuses_ref_1", func(t *testing.T) {
		var refs []int
		for range 2 {
			pdus, err := sms.Encode([]byte(long), sms.To("+447700900123"))
			if err != nil {
				t.Fatalf("sms.Encode: %v", err)
			}
			_, _, ref, _ := pdus[0].ConcatInfo()
			refs = append(refs, ref)
		}
		if refs[0] != refs[1] {
			t.Errorf("warthog618/sms now gives distinct refs %v; bug 2 is fixed upstream", refs)
		}
	})
	for _, tc := range []struct {
		name    string
		ref     uint16
		ref16   bool
		want    uint16
		bits    int
		udhHead string
	}{
		{name: "8bit_ref_is_low_byte", ref: 0x1234, want: 0x34, bits: 8, udhHead: "050003"},
		{name: "16bit_ref", ref: 0x1234, ref16: true, want: 0x1234, bits: 16, udhHead: "060804"},
		{name: "16bit_ref_high", ref: 0xFFFE, ref16: true, want: 0xFFFE, bits: 16, udhHead: "060804"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parts, err := EncodeSubmit("+447700900123", long, SubmitOptions{NextRef: func() uint16 { return tc.ref }, Ref16: tc.ref16})
			if err != nil {
				t.Fatalf("EncodeSubmit: %v", err)
			}
			for i, m := range decodeAll(t, parts) {
				if m.Concat == nil || m.Concat.Ref != tc.want || m.Concat.RefBits != tc.bits || int(m.Concat.Seq) != i+1 || int(m.Concat.Total) != len(parts) {
					t.Errorf("part %d: concat %+v, want ref %#x/%d bits seq %d/%d", i+1, m.Concat, tc.want, tc.bits, i+1, len(parts))
				}
				if got := fmt.Sprintf("%X", m.UDH); !strings.HasPrefix(got, tc.udhHead) {
					t.Errorf("part %d: UDH %s, want prefix %s", i+1, got, tc.udhHead)
				}
			}
		})
	}
	t.Run("no_ref_consumed_for_single_part", func(t *testing.T) {
		c := &counter{}
		if _, err := EncodeSubmit("+447700900123", "short", SubmitOptions{NextRef: c.NextRef}); err != nil {
			t.Fatalf("EncodeSubmit: %v", err)
		}
		if c.calls != 0 {
			t.Errorf("NextRef called %d times for a single part", c.calls)
		}
	})
	t.Run("no_ref_consumed_when_too_long", func(t *testing.T) {
		c := &counter{}
		_, err := EncodeSubmit("+447700900123", long, SubmitOptions{NextRef: c.NextRef, MaxParts: 1})
		if !errors.Is(err, ErrTooLong) {
			t.Fatalf("got %v, want ErrTooLong", err)
		}
		if !strings.Contains(err.Error(), "2 SMS parts") {
			t.Errorf("error %q does not say how many parts were needed", err)
		}
		if c.calls != 0 {
			t.Errorf("NextRef called %d times for a refused message", c.calls)
		}
	})
	t.Run("multi_part_without_NextRef_fails", func(t *testing.T) {
		if _, err := EncodeSubmit("+447700900123", long, SubmitOptions{}); err == nil {
			t.Error("EncodeSubmit without NextRef succeeded for a 2-part message")
		}
	})
}

// Bug 5: the library's decoder rejects PDUs that Gammu accepts. Decode is
// lenient about padding and broken lengths but still rejects truncation
// and garbage.
func TestRegressionBug5Lenient(t *testing.T) {
	const deliver = "07911326040000F0040B911346610089F60000208062917314480CC8F71D14969741F977FD07" // oFono simple deliver
	for _, tc := range []struct {
		name     string
		pdu      string
		hasSMSC  bool
		wantErr  string // substring; "" = must decode
		wantText string
		check    func(t *testing.T, m *Message)
	}{
		{name: "trailing_FF_padding", pdu: deliver + strings.Repeat("FF", 20), hasSMSC: true, wantText: "How are you?"},
		{name: "lower_case_and_white_space", pdu: " " + strings.ToLower(deliver) + "\r\n", hasSMSC: true, wantText: "How are you?"},
		{
			// Gammu tests/at-sms/32.dump: +CMGR length 29 covers PI=FF and FF padding.
			name:    "status_report_PI_FF",
			pdu:     "079124602009999002AB098106845688F8907080517375809070805183018000FFFFFFFFFFFFFFFFFFFF",
			hasSMSC: true,
			check: func(t *testing.T, m *Message) {
				if m.Type != StatusReport || m.MR != 0xAB || m.Address != "604865888" || m.Status != 0 {
					t.Errorf("got %v MR %d RA %q ST %d, want status report MR 171 RA 604865888 ST 0", m.Type, m.MR, m.Address, m.Status)
				}
				if want := "2009-07-08T15:38:10+02:00"; m.Discharge.Format(time.RFC3339) != want {
					t.Errorf("discharge %v, want %s", m.Discharge, want)
				}
			},
		},
		{
			// Gammu tests/at-sms/39.dump: TP-UDL 53 septets, 76 octets of user data.
			name:     "user_data_longer_than_UDL",
			pdu:      "07914336120011F10404A14949000021807001253040356C76B81D268741F0B29C9C268741E4B20EB49AD16CB19BAD368BD96EA0B71B04BBBD603810284C078162315D2CE70289EBFAE1AC0CB2BFF52C10FC2D0799C3F6B71CC46687DB6550980D8AC962",
			hasSMSC:  true,
			wantText: "llamada perdida de: +34617653167 on 07/08  at  11:19.",
		},
		{
			// python-gsmmodem: TP-UDL 0xA0 (more than 140 octets is impossible), 10 octets present.
			name:     "impossible_UDL_decodes_what_is_there",
			pdu:      "0041010C910661345542F60008A0050003000301306F3044",
			hasSMSC:  true,
			wantText: "はい",
		},
		{
			name:    "status_report_truncated_optional_part",
			pdu:     "0006D60B911326880736F411101171955140111011719571400007", // PI says PID+DCS+UDL, nothing follows
			hasSMSC: true,
			check: func(t *testing.T, m *Message) {
				if m.MR != 214 || m.Address != "+31628870634" {
					t.Errorf("got MR %d RA %q", m.MR, m.Address)
				}
			},
		},
		{name: "reject_truncated_user_data", pdu: "07912143658709F1040B918100551512F20000111010214365000BE8329BFD4697D9EC37", hasSMSC: true, wantErr: "user data truncated"},
		{name: "reject_not_hex", pdu: "+CMGR: 0,,23", hasSMSC: true, wantErr: "AT+CMGF=0"},
		{name: "reject_odd_hex", pdu: deliver[:len(deliver)-1], hasSMSC: true, wantErr: "odd number of hex digits"},
		{name: "reject_empty", pdu: "", hasSMSC: true, wantErr: "empty"},
		{name: "reject_reserved_MTI", pdu: "0043010C910661345542F60008A0050003000301306F3044", hasSMSC: true, wantErr: "reserved message type 3"},
		{name: "reject_SMSC_longer_than_PDU", pdu: "91947122982661", hasSMSC: true, wantErr: "SMSC address"},
		{name: "reject_address_too_long", pdu: "0004FF91", hasSMSC: true, wantErr: "TP-OA"},
		{name: "reject_truncated_address", pdu: "001C011C", hasSMSC: true, wantErr: "TP-OA"},
		{name: "reject_truncated_SCTS", pdu: "00040B911346610089F600002080629173", hasSMSC: true, wantErr: "TP-PID/TP-DCS/TP-SCTS/TP-UDL"},
		{name: "reject_non_BCD_SCTS", pdu: "00040B911346610089F60000A080629173144800", hasSMSC: true, wantErr: "not BCD"},
		{name: "reject_UDHI_without_user_data", pdu: "004100010100014B00002E", hasSMSC: true, wantErr: "TP-UDHI is set"},
		{name: "reject_UDH_longer_than_user_data", pdu: "00440B911346610089F6000420806291731448050805000301", hasSMSC: true, wantErr: "TP-UDH"},
		{name: "reject_bad_UDH_element", pdu: "00440B911346610089F60008208062917314480604000A03000100", hasSMSC: true, wantErr: "TP-UDH"},
		{name: "reject_bare_TPDU_read_with_SMSC", pdu: "0791", hasSMSC: true, wantErr: "SMSC address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode(tc.pdu, tc.hasSMSC)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("Decode accepted it: %+v", m)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q does not mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if tc.wantText != "" && m.Text != tc.wantText {
				t.Errorf("text: got %q, want %q", m.Text, tc.wantText)
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
	t.Run("upstream_still_rejects_padding", func(t *testing.T) {
		b, _ := hex.DecodeString(deliver[16:] + "FFFF")
		if _, err := sms.Unmarshal(b); err == nil {
			t.Error("warthog618/sms now accepts trailing padding; bug 5 is fixed upstream")
		}
	})
}

var upperHex = regexp.MustCompile(`^[0-9A-F]+$`)

// Bug 10: pdumode.MarshalHexString writes lower-case hex, which some
// firmware refuses. Part.Hex is upper-case.
func TestRegressionBug10UpperCaseHex(t *testing.T) {
	for _, tc := range []struct{ name, to, text, smsc string }{
		{name: "gsm7", to: "+447700900123", text: "hello"},
		{name: "ucs2_with_smsc", to: "07700900123", text: "привет 😀", smsc: "+447785016005"},
		{name: "multi_part", to: "+447700900123", text: strings.Repeat("ßéèàù", 50)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parts, err := EncodeSubmit(tc.to, tc.text, SubmitOptions{SMSC: tc.smsc, NextRef: (&counter{}).NextRef})
			if err != nil {
				t.Fatalf("EncodeSubmit: %v", err)
			}
			for _, p := range parts {
				if !upperHex.MatchString(p.Hex) {
					t.Errorf("part %d hex is not upper-case hex: %s", p.Seq, p.Hex)
				}
			}
		})
	}
}

// Bug 11: PDUs read from storage carry SMS-SUBMITs (TP-MTI 01); the library
// unmarshals by its default MT direction and fails. Decode goes by TP-MTI.
func TestRegressionBug11StoredDirection(t *testing.T) {
	for _, tc := range []struct {
		name, pdu, to string
		want          Type
		mr            int
	}{
		// Gammu tests/at-sms/16.dump and 28.dump (stored sent messages).
		{name: "stored_submit_ucs2", pdu: "07912480002143651100048121430008FF0C003100320033003400350036", want: Submit, to: "1234"},
		{name: "stored_submit_gsm7", pdu: "07915141991321F311000B914161787734F800F1FF32EE7A2B0D72A7DBE9B10BE4ACB7C36950DA3D2ECBC7A07918640F9341E432082E4FB7CBF331A82C97BFE56917", want: Submit, to: "+14168777438"},
		{name: "stored_submit_with_MR", pdu: "0791361907001003B17A0C913619397750320000AD11CD701E340FB3C3F23CC81D0689C3BF", want: Submit, to: "+639193770523", mr: 122},
		{name: "deliver", pdu: "07911326040000F0040B911346610089F60000208062917314480CC8F71D14969741F977FD07", want: Deliver, to: "+31641600986"},
		{name: "status_report", pdu: "0006D60B911326880736F4111011719551401110117195714000", want: StatusReport, to: "+31628870634", mr: 214},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode(tc.pdu, true)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if m.Type != tc.want || m.Address != tc.to || m.MR != tc.mr {
				t.Errorf("got %v to %q MR %d, want %v to %q MR %d", m.Type, m.Address, m.MR, tc.want, tc.to, tc.mr)
			}
		})
	}
	t.Run("upstream_default_direction_fails", func(t *testing.T) {
		b, _ := hex.DecodeString("1100048121430008FF0C003100320033003400350036")
		if _, err := sms.Unmarshal(b); err == nil {
			t.Error("warthog618/sms now unmarshals a stored SMS-SUBMIT without AsMO; bug 11 is fixed upstream")
		}
	})
}

// TestDecodeTimestamp covers the SCTS semi-octets, time zones and year
// pivot.
func TestDecodeTimestamp(t *testing.T) {
	for _, tc := range []struct {
		name, hex, want string
		wantErr         bool
	}{
		{name: "utc", hex: "11101021436500", want: "2011-01-01T12:34:56Z"},
		{name: "positive_quarter_hours", hex: "70503070400422", want: "2007-05-03T07:04:40+05:30"},
		{name: "negative_whole_hours", hex: "01902151110129", want: "2010-09-12T15:11:10-03:00"},
		{name: "negative_half_hour", hex: "11101021436549", want: "2011-01-01T12:34:56-03:30"},
		{name: "negative_three_quarters", hex: "11101021436538", want: "2011-01-01T12:34:56-00:45"},
		{name: "negative_one_hour", hex: "20806291731448", want: "2002-08-26T19:37:41-01:00"},
		{name: "units_nibble_A_lenient", hex: "019012413064A0", want: "2010-09-21T14:03:46+02:30"},
		{name: "year_99_is_1999", hex: "99309251619580", want: "1999-03-29T15:16:59+02:00"},
		{name: "year_89_is_2089", hex: "98010121436500", want: "2089-10-10T12:34:56Z"},
		{name: "all_zero_is_zero_time", hex: "00000000000000", want: "0001-01-01T00:00:00Z"},
		{name: "non_BCD_rejected", hex: "1A101021436500", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := hex.DecodeString(tc.hex)
			got, err := decodeTimestamp(b, "TP-SCTS")
			if tc.wantErr {
				if err == nil {
					t.Fatalf("accepted: %v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeTimestamp: %v", err)
			}
			if g := got.Format(time.RFC3339); g != tc.want {
				t.Errorf("got %s, want %s", g, tc.want)
			}
		})
	}
}

// TestDecodeFeatures pins the features the bridge relies on, one PDU each
// (all from the shared vectors, repeated here so they run without them).
func TestDecodeFeatures(t *testing.T) {
	for _, tc := range []struct {
		name, pdu string
		hasSMSC   bool
		check     func(m *Message) string
	}{
		{name: "alphanumeric_sender_odd_length", pdu: "07919471060040340409D0C6A733390400009060920173018093CC74595C96838C4F6772085AD6DDE4320B444E9741D4B03C6D7EC3E9E9B71B9474D3CB727799DEA286CFE5B9991DA6CBC3F432E85E9793CBA0F09A9EB6A7CB72BA0B9474D3CB727799DE72D6E9FABAFB0CBAA7E56490BA4CD7D34170F91BE4ACD3F575F7794E0F9F4161F1B92C2F8FD1EE32DD054AA2E520E3D3991C82A8E5701B", hasSMSC: true,
			check: func(m *Message) string {
				return want(m.Address == "FONIC" && m.TOA == 0xD0, "address %q TOA %02X", m.Address, m.TOA)
			}},
		{name: "alphanumeric_sender_even_length", pdu: "07919333852804000412D0F7FBDD454FB75D693A0000903002801153402BCD301E9F0605D9E971191483C140412A35690D52832063D2F9040599A058EE05A3BD6430580E", hasSMSC: true,
			check: func(m *Message) string { return want(m.Address == "www.tim.it", "address %q", m.Address) }},
		{name: "odd_length_national_number", pdu: "07912143658709F1040B818100551512F20000111010214365000AE8329BFD4697D9EC37", hasSMSC: true,
			check: func(m *Message) string {
				return want(m.Address == "18005551212" && m.TOA == 0x81 && m.SMSC == "+12345678901", "address %q TOA %02X SMSC %q", m.Address, m.TOA, m.SMSC)
			}},
		{name: "missing_F_fill_nibble", pdu: "0001000B9153101010101000001A1BC586B2416D529BD786B7E96D7C1BE002C8011318870E",
			check: func(m *Message) string { return want(m.Address == "#", "address %q", m.Address) }},
		{name: "negative_tz", pdu: "07912160130320F5440B916171056429F5000021405291650569A00500034C0201A9E8F41C949E83C2207B599E07B1DFEE33885E9ED341E4F23C7D7697C920FA1B54C697E5E3F4BC0C6AD7D9F434081E96D341E3303C2C4EB3D3F4BC0B94A483E6E8779D4D06CDD1EF3BA80E0785E7A0B7BB0C6A97E7F3F0B9CC02B9DF7450780EA2DFDF2C50780EA2A3CBA0BA9B5C96B3F369F71954768FDFE4B4FB0C9297E1F2F2BCECA6CF41", hasSMSC: true,
			check: func(m *Message) string {
				_, off := m.SCTS.Zone()
				return want(off == -4*3600, "offset %d", off)
			}},
		{name: "eight_bit_data_class0", pdu: "07912143658709F1040B918100551512F200F4111010214365000AE8329BFD4697D9EC37DE", hasSMSC: true,
			check: func(m *Message) string {
				return want(m.Alphabet == EightBit && m.Class == 0 && fmt.Sprintf("%X", m.Data) == "E8329BFD4697D9EC37DE" && m.Text == "", "alphabet %v class %d data %X", m.Alphabet, m.Class, m.Data)
			}},
		{name: "class0_gsm7", pdu: "0001000B914356143254F6001006E8721E947F03", hasSMSC: true,
			check: func(m *Message) string {
				return want(m.Class == 0 && m.Text == "hey yo", "class %d text %q", m.Class, m.Text)
			}},
		{name: "no_class", pdu: "0001000B914316565811F9000004E8373B0C", hasSMSC: true,
			check: func(m *Message) string { return want(m.Class == -1, "class %d", m.Class) }},
		{name: "ucs2_emoji_surrogate_pair", pdu: "00040B914477009001F30008521010214365000CD83DDE00002000F0D83DDE80", hasSMSC: true,
			check: func(m *Message) string { return want(m.Text == "😀 ð🚀", "text %q", m.Text) }},
		{name: "ucs2_lone_surrogate_replaced", pdu: "00040B914477009001F3000852101021436500040041D83D", hasSMSC: true,
			check: func(m *Message) string { return want(m.Text == "A\uFFFD", "text %q", m.Text) }},
		{name: "concat_16bit_ref", pdu: "00440B914477009001F3000052101021436500" + "0E" + "06080412340201" + "E8329BFD0E01", hasSMSC: true,
			check: func(m *Message) string {
				return want(m.Concat != nil && *m.Concat == Concat{Ref: 0x1234, Total: 2, Seq: 1, RefBits: 16} && m.Text == "hello!", "concat %+v text %q", m.Concat, m.Text)
			}},
		{name: "gsm7_extension", pdu: "06917228195339040B917228214365F70000313062315352800A800D8A5E98D337A910", hasSMSC: true,
			check: func(m *Message) string { return want(m.Text == "@{tést}!", "text %q", m.Text) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode(tc.pdu, tc.hasSMSC)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if msg := tc.check(m); msg != "" {
				t.Error(msg)
			}
		})
	}
}

// want returns "" when ok, else the formatted complaint.
func want(ok bool, format string, args ...any) string {
	if ok {
		return ""
	}
	return "got " + fmt.Sprintf(format, args...)
}

// decodeAll decodes every part and checks it is the SMS-SUBMIT it claims.
func decodeAll(t *testing.T, parts []Part) []*Message {
	t.Helper()
	ms := make([]*Message, len(parts))
	for i, p := range parts {
		m, err := Decode(p.Hex, true)
		if err != nil {
			t.Fatalf("Decode part %d (%s): %v", i+1, p.Hex, err)
		}
		if m.Type != Submit {
			t.Fatalf("part %d is %v", i+1, m.Type)
		}
		if smscLen := int(p.Hex[0]-'0')<<4 | int(p.Hex[1]-'0'); len(p.Hex)/2-1-smscLen != p.TPDULen {
			t.Errorf("part %d: TPDULen %d does not match the hex (%d octets, SMSC field %d)", i+1, p.TPDULen, len(p.Hex)/2, smscLen+1)
		}
		if p.Seq != i+1 || p.Total != len(parts) {
			t.Errorf("part %d: Seq/Total %d/%d", i+1, p.Seq, p.Total)
		}
		ms[i] = m
	}
	return ms
}

// TestEncodeSubmitRoundTrip encodes, decodes and joins, checking part
// counts at the GSM 7-bit and UCS-2 boundaries.
func TestEncodeSubmitRoundTrip(t *testing.T) {
	ext := strings.Repeat("€", 80) // 160 septets
	zh := "ж"                      // UCS-2, one unit
	for _, tc := range []struct {
		name  string
		text  string
		parts int
		alpha Alphabet
	}{
		{name: "empty", text: "", parts: 1},
		{name: "short", text: "Hello world!", parts: 1},
		{name: "gsm7_160", text: strings.Repeat("a", 160), parts: 1},
		{name: "gsm7_161", text: strings.Repeat("a", 161), parts: 2},
		{name: "gsm7_306", text: strings.Repeat("a", 306), parts: 2},
		{name: "gsm7_307", text: strings.Repeat("a", 307), parts: 3},
		{name: "gsm7_all_default_chars", text: "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà", parts: 1},
		{name: "extension_counts_two_septets_160", text: ext, parts: 1},
		{name: "extension_counts_two_septets_162", text: ext + "€", parts: 2},
		{name: "extension_one_septet_over", text: ext[:len(ext)-len("€")] + "ab", parts: 1},
		{name: "extension_one_septet_over_2", text: ext + "a", parts: 2},
		{name: "escape_not_split_at_boundary", text: strings.Repeat("a", 152) + "€" + strings.Repeat("b", 20), parts: 2},
		{name: "esc_control_char_goes_ucs2", text: "a\x1bb", parts: 1, alpha: UCS2},
		{name: "ucs2_70", text: strings.Repeat(zh, 70), parts: 1, alpha: UCS2},
		{name: "ucs2_71", text: strings.Repeat(zh, 71), parts: 2, alpha: UCS2},
		{name: "ucs2_134", text: strings.Repeat(zh, 134), parts: 2, alpha: UCS2},
		{name: "ucs2_135", text: strings.Repeat(zh, 135), parts: 3, alpha: UCS2},
		{name: "emoji_single_part_69_units", text: strings.Repeat(zh, 68) + "😀", parts: 1, alpha: UCS2},
		{name: "emoji_not_split_at_67", text: strings.Repeat(zh, 66) + "😀" + strings.Repeat(zh, 10), parts: 2, alpha: UCS2},
		{name: "emojis_only", text: strings.Repeat("😀🚀", 40), parts: 3, alpha: UCS2},
		{name: "mixed_latin_cyrillic_cjk_emoji", text: strings.Repeat("Hello Привет 你好 😀 ", 12), parts: 4, alpha: UCS2},
	} {
		for _, ref16 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/ref16=%v", tc.name, ref16), func(t *testing.T) {
				if ref16 && tc.parts == 1 {
					t.Skip("single part has no concatenation IE")
				}
				parts, err := EncodeSubmit("+447700900123", tc.text, SubmitOptions{NextRef: (&counter{}).NextRef, Ref16: ref16})
				if err != nil {
					t.Fatalf("EncodeSubmit: %v", err)
				}
				ms := decodeAll(t, parts)
				wantParts := tc.parts
				if ref16 && tc.alpha == UCS2 && tc.name == "ucs2_134" {
					wantParts = 3 // 66 units per part with the 16-bit IE
				}
				if ref16 && tc.name == "gsm7_306" {
					wantParts = 3 // 152 septets per part with the 16-bit IE
				}
				if len(parts) != wantParts {
					t.Fatalf("got %d parts, want %d", len(parts), wantParts)
				}
				for i, m := range ms {
					if m.Alphabet != tc.alpha || m.Address != "+447700900123" || m.TOA != 0x91 || m.MR != 0 || m.PID != 0 {
						t.Errorf("part %d: alphabet %v address %q TOA %02X MR %d PID %d", i+1, m.Alphabet, m.Address, m.TOA, m.MR, m.PID)
					}
					if strings.ContainsRune(m.Text, utf8.RuneError) {
						t.Errorf("part %d holds a broken character: %q", i+1, m.Text)
					}
					if m.Alphabet == GSM7 && len(m.raw.septets) > 0 && m.raw.septets[len(m.raw.septets)-1] == esc {
						t.Errorf("part %d ends with a dangling escape", i+1)
					}
					if len(parts) > 1 && m.Concat == nil {
						t.Errorf("part %d has no concatenation IE", i+1)
					}
				}
				got, err := Join(ms)
				if err != nil {
					t.Fatalf("Join: %v", err)
				}
				if got != tc.text {
					t.Errorf("round trip: got %q, want %q", got, tc.text)
				}
				var perPart strings.Builder
				for _, m := range ms {
					perPart.WriteString(m.Text)
				}
				if perPart.String() != tc.text {
					t.Errorf("parts' texts do not concatenate to the text: %q", perPart.String())
				}
			})
		}
	}
}

// TestEncodeSubmitFields checks the TPDU header EncodeSubmit writes against
// PDUs other encoders produce for the same input.
func TestEncodeSubmitFields(t *testing.T) {
	for _, tc := range []struct {
		name, to, text string
		opts           SubmitOptions
		want           string
	}{
		// python-messaging test_sms.py and python-gsmmodem test_pdu.py.
		{name: "no_validity", to: "+34616585119", text: "hola", want: "0001000B914316565811F9000004E8373B0C"},
		{name: "status_report_requested", to: "+34654123456", text: "hey yo", opts: SubmitOptions{StatusReport: true}, want: "0021000B914356143254F6000006E8721E947F03"},
		{name: "hello_world", to: "+27820001111", text: "Hello World!", want: "0001000B917228001011F100000CC8329BFD065DDF72363904"},
		{name: "national_number_and_smsc", to: "1234", text: "123456", opts: SubmitOptions{SMSC: "+41761234567"}, want: "07911467214365F70100048121430000063" + "1D98C56B301"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parts, err := EncodeSubmit(tc.to, tc.text, tc.opts)
			if err != nil {
				t.Fatalf("EncodeSubmit: %v", err)
			}
			if len(parts) != 1 || parts[0].Hex != tc.want {
				t.Errorf("got %+v, want one part %s", parts, tc.want)
			}
		})
	}
}

func TestEncodeSubmitRejectsBadInput(t *testing.T) {
	for _, tc := range []struct{ name, to, smsc string }{
		{name: "empty_recipient", to: ""},
		{name: "plus_only", to: "+"},
		{name: "letters", to: "+44abc"},
		{name: "spaces", to: "+44 7700 900123"},
		{name: "too_long", to: "+123456789012345678901"},
		{name: "bad_smsc", to: "+447700900123", smsc: "smsc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if parts, err := EncodeSubmit(tc.to, "hi", SubmitOptions{SMSC: tc.smsc}); err == nil {
				t.Errorf("accepted: %+v", parts)
			}
		})
	}
}

// splitUCS2 builds two SMS-DELIVER parts of a UCS-2 text split after the
// given number of UTF-16 units, as some phones do (even inside a pair).
func splitUCS2(t *testing.T, units []uint16, at int, ref byte) []string {
	t.Helper()
	var out []string
	for i, chunk := range [][]uint16{units[:at], units[at:]} {
		ud := fmt.Sprintf("050003%02X02%02X", ref, i+1)
		for _, u := range chunk {
			ud += fmt.Sprintf("%04X", u)
		}
		out = append(out, fmt.Sprintf("00440B914477009001F30008521010214365%02X%02X%s", 0, len(ud)/2, ud))
	}
	return out
}

func TestJoin(t *testing.T) {
	dec := func(t *testing.T, pdus ...string) []*Message {
		t.Helper()
		var ms []*Message
		for _, p := range pdus {
			m, err := Decode(p, true)
			if err != nil {
				t.Fatalf("Decode %s: %v", p, err)
			}
			ms = append(ms, m)
		}
		return ms
	}
	// "ab😀cd" as UTF-16: a b D83D DE00 c d
	units := []uint16{'a', 'b', 0xD83D, 0xDE00, 'c', 'd'}
	t.Run("repairs_surrogate_pair_split_by_sender", func(t *testing.T) {
		ms := dec(t, splitUCS2(t, units, 3, 7)...)
		if !strings.HasSuffix(ms[0].Text, "\uFFFD") {
			t.Errorf("part 1 text %q: want a replacement character for the dangling half", ms[0].Text)
		}
		got, err := Join([]*Message{ms[1], ms[0]})
		if err != nil {
			t.Fatalf("Join: %v", err)
		}
		if got != "ab😀cd" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("repairs_escape_split_by_sender", func(t *testing.T) {
		// 7-bit parts "a<ESC>" and "ed": the € (ESC 0x65) spans the boundary.
		mk := func(seq int, septets []byte) string {
			hdr := fmt.Sprintf("050003090%d%02X", 2, seq)
			packed := packSeptets(septets, 1)
			return fmt.Sprintf("00440B914477009001F3000052101021436500%02X%s%X", 7+len(septets), hdr, packed)
		}
		ms := dec(t, mk(1, []byte{'a', esc}), mk(2, []byte{0x65, 'd'}))
		got, err := Join(ms)
		if err != nil {
			t.Fatalf("Join: %v", err)
		}
		if got != "a€d" {
			t.Errorf("got %q, want %q", got, "a€d")
		}
	})
	t.Run("hand_built_parts_use_text", func(t *testing.T) {
		got, err := Join([]*Message{
			{Text: "world", Concat: &Concat{Ref: 1, Total: 2, Seq: 2, RefBits: 8}},
			{Text: "hello ", Concat: &Concat{Ref: 1, Total: 2, Seq: 1, RefBits: 8}},
		})
		if err != nil || got != "hello world" {
			t.Errorf("got %q, %v", got, err)
		}
	})
	t.Run("single_part", func(t *testing.T) {
		got, err := Join([]*Message{{Text: "hi"}})
		if err != nil || got != "hi" {
			t.Errorf("got %q, %v", got, err)
		}
	})
	t.Run("identical_duplicate_tolerated", func(t *testing.T) {
		ms := dec(t, splitUCS2(t, units, 2, 7)...)
		got, err := Join([]*Message{ms[0], ms[1], ms[0]})
		if err != nil || got != "ab😀cd" {
			t.Errorf("got %q, %v", got, err)
		}
	})
	c := func(ref uint16, total, seq uint8) *Concat {
		return &Concat{Ref: ref, Total: total, Seq: seq, RefBits: 8}
	}
	for _, tc := range []struct {
		name    string
		parts   []*Message
		wantErr string
	}{
		{name: "none", parts: nil, wantErr: "no parts"},
		{name: "nil_part", parts: []*Message{nil}, wantErr: "nil"},
		{name: "incomplete", parts: []*Message{{Text: "a", Concat: c(1, 3, 1)}, {Text: "c", Concat: c(1, 3, 3)}}, wantErr: "missing 2"},
		{name: "mixed_refs", parts: []*Message{{Text: "a", Concat: c(1, 2, 1)}, {Text: "b", Concat: c(2, 2, 2)}}, wantErr: "mixed"},
		{name: "mixed_senders", parts: []*Message{{Address: "+1", Text: "a", Concat: c(1, 2, 1)}, {Address: "+2", Text: "b", Concat: c(1, 2, 2)}}, wantErr: "mixed"},
		{name: "mixed_with_unconcatenated", parts: []*Message{{Text: "a", Concat: c(1, 2, 1)}, {Text: "b"}}, wantErr: "mixed"},
		{name: "unconcatenated_first", parts: []*Message{{Text: "b"}, {Text: "a", Concat: c(1, 2, 1)}}, wantErr: "cannot be joined"},
		{name: "conflicting_duplicate", parts: []*Message{{Text: "a", Concat: c(1, 2, 1)}, {Text: "x", Concat: c(1, 2, 1)}, {Text: "b", Concat: c(1, 2, 2)}}, wantErr: "two different parts"},
		{name: "seq_out_of_range", parts: []*Message{{Text: "a", Concat: c(1, 2, 3)}}, wantErr: "outside"},
		{name: "binary", parts: []*Message{{Alphabet: EightBit, Data: []byte{1}}}, wantErr: "8-bit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Join(tc.parts)
			if err == nil {
				t.Fatalf("Join succeeded: %q", got)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

// packSeptets packs septets after fill bits, LSB first (TS 23.038 6.1.2.1).
func packSeptets(septets []byte, fill int) []byte {
	var out []byte
	var acc uint32
	bits := fill
	for _, s := range septets {
		acc |= uint32(s&0x7F) << bits
		bits += 7
		for bits >= 8 {
			out = append(out, byte(acc))
			acc >>= 8
			bits -= 8
		}
	}
	if bits > 0 {
		out = append(out, byte(acc))
	}
	return out
}

// TestConcurrentUse runs Decode and EncodeSubmit from several goroutines
// (run with -race: the library's lazily built tables are pre-built at init).
func TestConcurrentUse(t *testing.T) {
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				parts, err := EncodeSubmit("+447700900123", fmt.Sprintf("hello %d Şişli €", i), SubmitOptions{})
				if err != nil {
					t.Errorf("EncodeSubmit: %v", err)
					return
				}
				if _, err := Decode(parts[0].Hex, true); err != nil {
					t.Errorf("Decode: %v", err)
					return
				}
				if _, err := Decode("4100068121436500003403240103D8143689CD62C3D838360FC9A462B960329BCF26B8496E9E9BEA66BBE16EC29BF4E6BDA96FF61BFEE60F", false); err != nil {
					t.Errorf("Decode: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestTypeAndAlphabetStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{Deliver.String(), "SMS-DELIVER"}, {Submit.String(), "SMS-SUBMIT"}, {StatusReport.String(), "SMS-STATUS-REPORT"}, {Type(9).String(), "Type(9)"},
		{GSM7.String(), "gsm7"}, {UCS2.String(), "ucs2"}, {EightBit.String(), "8bit"}, {Alphabet(9).String(), "Alphabet(9)"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// FuzzDecode checks Decode never panics and that what it accepts is sane.
func FuzzDecode(f *testing.F) {
	if p := findVectors(f); p != "" {
		for _, v := range loadVectors(f) {
			f.Add(v.PDU, v.HasSMSC)
		}
	}
	for _, s := range []string{
		"", "00", "0000", "07911326040000F0040B911346610089F60000208062917314480CC8F71D14969741F977FD07FFFF",
		"079124602009999002AB098106845688F8907080517375809070805183018000FF",
		"00440B914477009001F30000521010214365000E0608041234020190E1F0781C",
		"0041010C910661345542F60008A0050003000301306F3044",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, hasSMSC bool) {
		m, err := Decode(s, hasSMSC)
		if err != nil {
			if m != nil {
				t.Fatalf("error %v with a message", err)
			}
			return
		}
		if !utf8.ValidString(m.Text) || !utf8.ValidString(m.Address) || !utf8.ValidString(m.SMSC) {
			t.Fatalf("invalid UTF-8 in %+v", m)
		}
		if m.Class < -1 || m.Class > 3 {
			t.Fatalf("class %d", m.Class)
		}
		if c := m.Concat; c != nil && (c.Seq == 0 || c.Seq > c.Total || (c.RefBits != 8 && c.RefBits != 16)) {
			t.Fatalf("bad concat %+v", c)
		}
		if m.Alphabet == EightBit && m.Text != "" {
			t.Fatalf("8-bit message with text %q", m.Text)
		}
		if m.Concat == nil && m.Alphabet != EightBit {
			if got, err := Join([]*Message{m}); err != nil || got != m.Text {
				t.Fatalf("Join of a single part: %q, %v", got, err)
			}
		}
	})
}

// FuzzEncodeSubmit checks any valid UTF-8 text survives encode/decode/join.
func FuzzEncodeSubmit(f *testing.F) {
	for _, s := range []string{"", "hi", "€[]{}", strings.Repeat("ж", 67) + "😀", strings.Repeat("a", 152) + "€", "\x00@\r\n"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, text string, ref16 bool) {
		if !utf8.ValidString(text) {
			t.Skip("EncodeSubmit takes UTF-8 text")
		}
		parts, err := EncodeSubmit("+447700900123", text, SubmitOptions{NextRef: (&counter{}).NextRef, Ref16: ref16})
		if err != nil {
			t.Fatalf("EncodeSubmit: %v", err)
		}
		got, err := Join(decodeAll(t, parts))
		if err != nil {
			t.Fatalf("Join: %v", err)
		}
		if got != text {
			t.Fatalf("round trip: got %q, want %q", got, text)
		}
	})
}

func BenchmarkEncodeSubmit(b *testing.B) {
	for _, bc := range []struct{ name, text string }{
		{name: "gsm7_single", text: "Hello, this is a short message from the bridge."},
		{name: "gsm7_3_parts", text: strings.Repeat("Lorem ipsum dolor sit amet. ", 15)},
		{name: "ucs2_5_parts", text: strings.Repeat("Привет 你好 😀 ", 25)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := &counter{}
			opts := SubmitOptions{NextRef: c.NextRef}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := EncodeSubmit("+447700900123", bc.text, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, bc := range []struct{ name, pdu string }{
		{name: "gsm7_deliver", pdu: "07911326040000F0040B911346610089F60000208062917314480CC8F71D14969741F977FD07"},
		{name: "gsm7_concat_part", pdu: "07912160130320F5440B916171056429F5000021405291650569A00500034C0201A9E8F41C949E83C2207B599E07B1DFEE33885E9ED341E4F23C7D7697C920FA1B54C697E5E3F4BC0C6AD7D9F434081E96D341E3303C2C4EB3D3F4BC0B94A483E6E8779D4D06CDD1EF3BA80E0785E7A0B7BB0C6A97E7F3F0B9CC02B9DF7450780EA2DFDF2C50780EA2A3CBA0BA9B5C96B3F369F71954768FDFE4B4FB0C9297E1F2F2BCECA6CF41"},
		{name: "ucs2_deliver", pdu: "07914306073011F0040B914316709807F2000880604290224080084E2D5174901A8BAF"},
		{name: "status_report", pdu: "0006D60B911326880736F4111011719551401110117195714000"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(bc.pdu, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
