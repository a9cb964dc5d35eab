package sms

import (
	"slices"
	"testing"

	"github.com/bubbled/bubbled/connectors/phone"
)

func TestParsers(t *testing.T) {
	t.Run("CMGL", func(t *testing.T) {
		info := []string{
			`+CMGL: 1,0,,24`, "0791AABB",
			"garbage",
			`+CMGL: 2,3,"name",30`, "0011FF",
			`+CMGL: 3,1,,5`, // PDU line missing
			`+CMGL: 4,1,,5`, "07AB",
		}
		got := parseCMGL(info)
		want := []cmglEntry{{1, 0, "0791AABB"}, {2, 3, "0011FF"}, {4, 1, "07AB"}}
		if !slices.Equal(got, want) {
			t.Errorf("parseCMGL = %v, want %v", got, want)
		}
	})
	storage := []struct {
		name  string
		lists [][]string
		want  string
	}{
		{"none", nil, "SM"},
		{"SM preferred", [][]string{{"ME", "SM"}, {"ME", "SM"}, {"ME", "SM"}}, "SM"},
		{"ME when SM cannot receive", [][]string{{"SM", "ME"}, {"SM", "ME"}, {"ME"}}, "ME"},
		{"odd names", [][]string{{"XX", "YY"}, {"YY"}, {"YY"}}, "YY"},
	}
	for _, tc := range storage {
		t.Run("storage "+tc.name, func(t *testing.T) {
			if got := pickStorage(tc.lists); got != tc.want {
				t.Errorf("pickStorage = %q, want %q", got, tc.want)
			}
		})
	}
	// The line masks numbers in its logs with the one rule of
	// connectors/phone: every digit but the last two (short numbers too).
	masks := []struct{ in, want string }{
		{"+15551234567", "+*********67"},
		{"Bank", "Bank"},
		{"123", "*23"},
	}
	for _, tc := range masks {
		t.Run("mask "+tc.in, func(t *testing.T) {
			if got := phone.Mask(tc.in); got != tc.want {
				t.Errorf("phone.Mask(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
