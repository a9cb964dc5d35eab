package rcs

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/fallback"
)

func TestMessageID(t *testing.T) {
	// Expected values computed with Python's uuid.uuid5, an independent
	// implementation.
	cases := []struct {
		name string
		got  string
		want string
	}{
		{name: "namespace derivation", got: uuidV5(namespaceURL, "urn:bubbled:rcs:message-id"), want: Namespace},
		{name: "RFC example", got: uuidV5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "www.example.com"), want: "2ed6657d-e927-568b-95e1-2665a8aea6a2"},
		{name: "event part 0", got: MessageID("$abc:example.org", 0), want: "8d564b98-3baf-5770-afe3-dbbb5e678e1b"},
		{name: "event part 1", got: MessageID("$abc:example.org", 1), want: "76c70c75-9d38-53bd-bf1f-32c9ac85cef5"},
		{name: "read event", got: readEventID("Xs8CI3tdf"), want: "6ccd3046-649d-5201-b57f-3637d1795a17"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %s, want %s", tc.got, tc.want)
			}
		})
	}
}

func TestUUIDV4(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a, b := uuidV4(), uuidV4()
	if !re.MatchString(a) || a == b {
		t.Fatalf("uuidV4 gave %s and %s", a, b)
	}
	if _, err := parseUUID("not-a-uuid"); err == nil {
		t.Fatal("parseUUID accepted garbage")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		in   string
		want time.Duration
	}{
		{name: "seconds", in: "7", want: 7 * time.Second},
		{name: "spaces", in: " 30 ", want: 30 * time.Second},
		{name: "zero", in: "0"},
		{name: "negative", in: "-5"},
		{name: "capped at a day", in: "999999", want: 24 * time.Hour},
		{name: "HTTP date", in: "Wed, 25 Nov 2026 12:01:30 GMT", want: 90 * time.Second},
		{name: "date in the past", in: "Wed, 25 Nov 2026 11:00:00 GMT"},
		{name: "garbage", in: "soon"},
		{name: "absent", in: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseRetryAfter(tc.in, now); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	p := RetryPolicy{Policy: fallback.RetryPolicy{Initial: time.Second, Max: 8 * time.Second}}.withDefaults()
	for retry := 1; retry <= 8; retry++ {
		full := time.Second << (retry - 1)
		if full > 8*time.Second {
			full = 8 * time.Second
		}
		for range 50 {
			d := p.backoff(retry)
			if d < full/2 || d > full {
				t.Fatalf("retry %d: backoff %v outside [%v, %v]", retry, d, full/2, full)
			}
		}
	}
}

// TestMaskNumber checks that RCS errors and logs show numbers by the one
// masking rule (phone.Mask: the last two digits only).
func TestMaskNumber(t *testing.T) {
	cases := []struct{ in, want string }{
		{in: "+15551234567", want: "+*********67"},
		{in: "+4477009", want: "+*****09"},
		{in: "12345", want: "***45"},
		{in: "", want: ""},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			if got := phone.Mask(tc.in); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if ValidNumber(tc.in) {
				return
			}
			_, err := numberPath("rbm", "send message", tc.in)
			if err == nil {
				t.Fatalf("numberPath(%q) accepted a number that is not E.164", tc.in)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.want)) {
				t.Fatalf("error %q does not show the number as %q", err, tc.want)
			}
		})
	}
}
