package phone

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, raw, region, want string
		bad                     bool
	}{
		{name: "international", raw: "+1 555 123 4567", region: "", want: "+15551234567"},
		{name: "tel URI", raw: "tel:+447700900123", region: "", want: "+447700900123"},
		{name: "national in region", raw: "07700 900123", region: "GB", want: "+447700900123"},
		{name: "region lower case", raw: "030 1234567", region: "de", want: "+49301234567"},
		{name: "empty", raw: "  ", region: "US", bad: true},
		{name: "letters", raw: "hello", region: "US", bad: true},
		{name: "too short", raw: "+1 555", region: "", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.raw, tc.region)
			if tc.bad {
				if !errors.Is(err, ErrBadNumber) || !strings.Contains(err.Error(), "international form") {
					t.Fatalf("Parse(%q) = %q, %v; want ErrBadNumber saying how to write it", tc.raw, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Parse(%q, %q) = %q, %v; want %q", tc.raw, tc.region, got, err, tc.want)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	for _, tc := range []struct {
		name, raw, region, want, problem string
	}{
		{name: "international", raw: "+1 555 123 4567", want: "+15551234567"},
		{name: "national in region", raw: "07700 900123", region: "GB", want: "+447700900123"},
		{name: "empty", raw: " tel: ", region: "US", problem: "empty"},
		{name: "too short", raw: "+1 555", problem: "wrong number of digits for region US"},
		{name: "too long for its region", raw: "+44 7700 900123 4567", problem: "wrong number of digits for region GB"},
		{name: "letters", raw: "hello7", region: "US", problem: "not a number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, problem := Explain(tc.raw, tc.region)
			if got != tc.want || !strings.Contains(problem, tc.problem) || (tc.problem == "") != (problem == "") {
				t.Fatalf("Explain(%q, %q) = %q, %q; want %q, %q", tc.raw, tc.region, got, problem, tc.want, tc.problem)
			}
			if strings.Contains(problem, strings.TrimSpace(tc.raw)) {
				t.Fatalf("Explain(%q) repeats the input in %q", tc.raw, problem)
			}
			if _, err := Parse(tc.raw, tc.region); (err == nil) != (problem == "") {
				t.Fatalf("Parse and Explain disagree on %q: %v vs %q", tc.raw, err, problem)
			}
		})
	}
}

func TestValidAndFormat(t *testing.T) {
	if !Valid("+12015550123", "") || Valid("+15550000000", "") {
		t.Fatal("Valid disagrees with the numbering plan")
	}
	if got := Format("+15551234567"); got != "+1 555-123-4567" {
		t.Fatalf("Format = %q", got)
	}
	if got := Format("BANK"); got != "BANK" {
		t.Fatalf("Format of a non-number = %q, want it unchanged", got)
	}
	if !KnownRegion("GB") || KnownRegion("XX") {
		t.Fatal("KnownRegion wrong")
	}
}

func TestMask(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"+15551234567", "+*********67"},
		{"15551234567", "*********67"},
		{"72404", "***04"},
		{"BANK", "BANK"},
		{"Bank123", "Bank*23"},
		{"12", "**"},
		{"", ""},
	} {
		if got := Mask(tc.in); got != tc.want {
			t.Errorf("Mask(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestMaskRevealsNoMoreTogether: two masks of the same number, however it is
// written, reveal the same two digits, so log lines cannot be combined.
func TestMaskRevealsNoMoreTogether(t *testing.T) {
	a, b := Mask("+15551234567"), Mask("15551234567")
	if strings.Trim(a, "+*") != "67" || strings.Trim(b, "*") != "67" {
		t.Fatalf("masks reveal different digits: %q %q", a, b)
	}
}

func FuzzMask(f *testing.F) {
	f.Add("+15551234567")
	f.Fuzz(func(t *testing.T, s string) {
		m := Mask(s)
		shown := 0
		for _, c := range m {
			if c >= '0' && c <= '9' {
				shown++
			}
		}
		if shown > 2 {
			t.Fatalf("Mask(%q) = %q shows %d digits", s, m, shown)
		}
	})
}

func TestIsDigits(t *testing.T) {
	for in, want := range map[string]bool{"72404": true, "15551234567": true, "": false, "+1555": false, "12a": false, "١٢٣": false} {
		if got := IsDigits(in); got != want {
			t.Errorf("IsDigits(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestMaskText(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"E.164", "sent to +15551234567 now", "sent to +*********67 now"},
		{"ghost MXID", "@sms_15551234567:example.org", "@sms_*********67:example.org"},
		{"portal ID with line", "+15557654321|sim0", "+*********21|sim0"},
		{"formatted room name", "+1 555-123-4567", "+* ***-***-**67"},
		{"national with parentheses", "(555) 123-4567", "(***) ***-**67"},
		{"international with parentheses", "+1 (555) 123-4567", "+* (***) ***-**67"},
		{"two numbers", "+447700900123 and 15557654321", "+**********23 and *********21"},
		{"JSON value", `{"portal_id":"+15551234567"}`, `{"portal_id":"+*********67"}`},
		{"short code stays", "from 72404", "from 72404"},
		{"six digits stay", "code 123456", "code 123456"},
		{"IP address stays", "remote 192.168.100.200:8008", "remote 192.168.100.200:8008"},
		{"dots do not join", "version 1.234.567.8", "version 1.234.567.8"},
		{"date stays", "at 2026-12-06T15:49:18Z", "at 2026-12-06T15:49:18Z"},
		{"double separator breaks", "1234 - 5678", "1234 - 5678"},
		{"trailing separator kept", "call 5551234567- now", "call ********67- now"},
		{"no digits", "BANK", "BANK"},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := MaskText(tc.in)
			if got != tc.want {
				t.Fatalf("MaskText(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if again := MaskText(got); again != got {
				t.Fatalf("MaskText is not a fixed point: %q -> %q", got, again)
			}
		})
	}
}

func FuzzMaskText(f *testing.F) {
	for _, s := range []string{"+15551234567", "@sms_15551234567:x", "+1 (555) 123-4567", "2026-12-06", "a1b2c3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := MaskText(s)
		if len(got) != len(s) {
			t.Fatalf("MaskText changed the length: %q -> %q", s, got)
		}
		if MaskText(got) != got {
			t.Fatalf("not a fixed point: %q -> %q -> %q", s, got, MaskText(got))
		}
		run := 0
		for i := 0; i < len(got); i++ {
			if got[i] >= '0' && got[i] <= '9' {
				run++
				if run >= MinMaskedDigits && !strings.Contains(s, "-") {
					t.Fatalf("MaskText(%q) = %q still has %d digits in a row", s, got, run)
				}
			} else {
				run = 0
			}
		}
	})
}

// TestExplainRemembersBoundedly: a remembered answer is the answer (good
// and bad numbers, per region), and the memory stays bounded.
func TestExplainRemembersBoundedly(t *testing.T) {
	for _, c := range [][2]string{{"(555) 123-4567", "US"}, {"(555) 123-4567", "GB"}, {"12", "US"}, {"", "US"}, {"tel:+447700900123", ""}} {
		e1, p1 := explain(c[0], c[1])
		for range 2 {
			if e, p := Explain(c[0], c[1]); e != e1 || p != p1 {
				t.Fatalf("Explain(%q, %q) = %q, %q; want %q, %q", c[0], c[1], e, p, e1, p1)
			}
		}
	}
	for i := range maxExplained + 10 {
		Explain(fmt.Sprintf("+1555%07d", i), "US")
	}
	explained.mu.Lock()
	n := len(explained.m)
	explained.mu.Unlock()
	if n > maxExplained {
		t.Fatalf("%d answers remembered, want at most %d", n, maxExplained)
	}
}
