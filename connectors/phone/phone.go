// Package phone is bubbled's one place for phone numbers: parsing what people
// type or the network sends into E.164, rendering E.164 for people, and the
// one masking rule for logs. It is a leaf: it imports no bubbled package, so
// every connector, the router, the config and the bridge can share it.
package phone

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// ErrBadNumber is wrapped by Parse when the input is not a phone number.
var ErrBadNumber = errors.New("not a phone number")

// Parse reads a phone number typed by a person or sent by the network and
// returns its E.164 form with a leading "+". Numbers in national form are
// read in region (ISO 3166, e.g. "US"; case does not matter); a "tel:"
// prefix is accepted. Errors wrap ErrBadNumber, quote the input as given and
// say how to write it instead.
func Parse(raw, region string) (string, error) {
	e164, problem := Explain(raw, region)
	switch {
	case problem == "empty":
		return "", fmt.Errorf("%w: empty; write it in international form, e.g. +15551234567", ErrBadNumber)
	case problem != "":
		return "", fmt.Errorf("%w: %q: %s; write it in international form, e.g. +15551234567", ErrBadNumber, raw, problem)
	}
	return e164, nil
}

// Valid reports whether raw parses (as Parse) to a number that is not only
// possible by its length but assigned in its numbering plan.
func Valid(raw, region string) bool {
	num, err := phonenumbers.Parse(trimTel(raw), strings.ToUpper(region))
	return err == nil && phonenumbers.IsValidNumber(num)
}

// Explain is Parse for callers that show the input their own way (masked in
// logs, quoted under a config key): it returns the E.164 form, or, as
// problem, why raw is not a phone number in words that do not repeat raw
// ("empty", "wrong number of digits for region US", or the numbering
// library's reason).
func Explain(raw, region string) (e164, problem string) {
	key := explainKey{raw, region}
	explained.mu.Lock()
	r, ok := explained.m[key]
	explained.mu.Unlock()
	if ok {
		return r.e164, r.problem
	}
	e164, problem = explain(raw, region)
	explained.mu.Lock()
	if len(explained.m) >= maxExplained {
		clear(explained.m)
	}
	explained.m[key] = explainResult{e164, problem}
	explained.mu.Unlock()
	return e164, problem
}

// explained remembers Explain's answers: the numbering library's parse
// was about 3 % of the daemon's CPU per outbound SMS (the router, the
// directory and the line each parse the same few numbers again).
var explained = struct {
	mu sync.Mutex
	m  map[explainKey]explainResult
}{m: map[explainKey]explainResult{}}

// maxExplained bounds explained; it is emptied when full.
const maxExplained = 4096

type explainKey struct{ raw, region string }

type explainResult struct{ e164, problem string }

func explain(raw, region string) (e164, problem string) {
	s := trimTel(raw)
	if s == "" {
		return "", "empty"
	}
	num, err := phonenumbers.Parse(s, strings.ToUpper(region))
	if err != nil {
		return "", err.Error()
	}
	if !phonenumbers.IsPossibleNumber(num) {
		// GetRegionCodeForNumber knows only valid numbers; the country
		// code's main region names the plan the digits were counted in.
		return "", "wrong number of digits for region " + phonenumbers.GetRegionCodeForCountryCode(int(num.GetCountryCode()))
	}
	return phonenumbers.Format(num, phonenumbers.E164), ""
}

func trimTel(raw string) string {
	s := strings.TrimSpace(raw)
	return strings.TrimSpace(strings.TrimPrefix(s, "tel:"))
}

// Format renders an E.164 number for people ("+1 555-123-4567"). Input that
// does not parse is returned unchanged.
func Format(e164 string) string {
	num, err := phonenumbers.Parse(e164, "")
	if err != nil {
		return e164
	}
	return phonenumbers.Format(num, phonenumbers.INTERNATIONAL)
}

// KnownRegion reports whether region (ISO 3166, upper case) is one the
// numbering library knows, so national numbers can be read in it.
func KnownRegion(region string) bool {
	return phonenumbers.GetSupportedRegions()[region]
}

// IsDigits reports whether s is a non-empty run of ASCII digits: a short
// code ("72404") or an E.164 number without its "+".
func IsDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// Mask is the one masking rule for logs, errors and notices that may leave
// the machine: every digit but the last two becomes '*', every other
// character stays ("+15551234567" -> "+*********67", "BANK" -> "BANK").
// One rule everywhere means two log lines together reveal no more than
// either alone. Inputs with two digits or fewer are fully starred.
func Mask(s string) string {
	digits := 0
	for _, c := range s {
		if c >= '0' && c <= '9' {
			digits++
		}
	}
	keep := 2
	if digits <= keep {
		keep = 0
	}
	var b strings.Builder
	b.Grow(len(s))
	seen := 0
	for _, c := range s {
		if c >= '0' && c <= '9' {
			seen++
			if seen <= digits-keep {
				b.WriteByte('*')
				continue
			}
		}
		b.WriteRune(c)
	}
	return b.String()
}

// MinMaskedDigits is the fewest digits MaskText takes for a phone number:
// shorter runs (short codes, years, counts) stay as they are.
const MinMaskedDigits = 7

// MaskText applies Mask to every phone number in free text (a log message,
// an error, a Matrix ID like "@sms_15551234567:example.org", a room name like
// "+1 555-123-4567"): each run of at least MinMaskedDigits digits, with an
// optional leading '+' and single spaces, hyphens or parentheses between
// the digits, keeps its last two digits and its separators. Dots do not
// join digits (IP addresses and decimals stay readable), nor does a date
// (2026-12-06) count as a number. Text without a number is returned as it
// is, without allocating. Masked text is a fixed point:
// MaskText(MaskText(s)) == MaskText(s).
func MaskText(s string) string {
	var b []byte // nil until the first number
	last := 0    // s[last:] is not yet copied into b
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		end, digits := numberRun(s, i)
		if digits < MinMaskedDigits || isDate(s[i:end]) {
			i = end
			continue
		}
		if b == nil {
			b = make([]byte, 0, len(s))
		}
		b = append(b, s[last:i]...)
		b = append(b, Mask(s[i:end])...)
		last, i = end, end
	}
	if b == nil {
		return s
	}
	return string(append(b, s[last:]...))
}

// numberRun returns the end of the digit run starting at s[i] (a digit)
// and its number of digits. A separator counts only between two digits,
// and a '(' may also open right after another separator ("+1 (555) 123").
func numberRun(s string, i int) (end, digits int) {
	end = i
	for j := i; j < len(s); {
		if isDigit(s[j]) {
			digits++
			j++
			end = j
			continue
		}
		k := j
		for k < len(s) && k-j < 2 && isSeparator(s[k]) {
			k++
		}
		if k == j || k >= len(s) || !isDigit(s[k]) || (k-j == 2 && s[k-1] != '(' && s[j] != ')') {
			break
		}
		j = k
	}
	return end, digits
}

// isDate reports whether run is an ISO 8601 date, yyyy-mm-dd.
func isDate(run string) bool {
	if len(run) != 10 || run[4] != '-' || run[7] != '-' {
		return false
	}
	return IsDigits(run[:4]) && IsDigits(run[5:7]) && IsDigits(run[8:])
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isSeparator(c byte) bool {
	return c == ' ' || c == '-' || c == '(' || c == ')'
}
