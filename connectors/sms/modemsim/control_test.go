package modemsim

import "testing"

func TestSenderFromQuery(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"escaped plus", "+15557654321", "+15557654321"},
		{"unescaped plus became a space", " 15557654321", "+15557654321"},
		{"national number", "5557654321", "5557654321"},
		{"alphanumeric sender", "BANK", "BANK"},
		{"space before letters stays", " BANK", " BANK"},
		{"lone space stays", " ", " "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := senderFromQuery(c.in); got != c.want {
				t.Errorf("senderFromQuery(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}
