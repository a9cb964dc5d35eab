package at

import (
	"strings"
	"testing"
)

func TestLogLine(t *testing.T) {
	const pdu = "07915155000000F0040B915155674523F10000624011915521000AE8329BFD4697D9EC37"
	for _, tc := range []struct{ name, in, want string }{
		{"PDU", pdu, "<PDU of 36 bytes, sha256 "},
		{"lower-case PDU", strings.ToLower(pdu), "<PDU of 36 bytes, sha256 "},
		{"PIN", `AT+CPIN="1234"`, "AT+CPIN=<redacted>"},
		{"header line", `+CMGR: 0,,36`, `+CMGR: 0,,36`},
		{"short hex stays", "0A1B2C", "0A1B2C"},
		{"odd hex is no PDU", pdu + "0", pdu + "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := LogLine(tc.in)
			if !strings.HasPrefix(got, tc.want) {
				t.Fatalf("LogLine(%q) = %q, want it to start with %q", tc.in, got, tc.want)
			}
			if tc.name == "PDU" && (strings.Contains(got, "5155") || len(got) > 60) {
				t.Fatalf("LogLine shows PDU content: %q", got)
			}
		})
	}
	if LogLine(pdu) == LogLine("07915155000000F0040B915155674523F10000624011915521000AE8329BFD4697D9EC38") {
		t.Error("two PDUs log the same hash")
	}
}
