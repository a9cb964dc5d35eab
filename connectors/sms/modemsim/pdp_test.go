package modemsim

import "testing"

// TestPDPContexts: +CGDCONT and +CGACT answer as 27.007 §10.1.1/§10.1.10
// describe and an EC25 does: listing, defining, activating, and errors for
// a bad or undefined cid.
func TestPDPContexts(t *testing.T) {
	h := newHost(t, Options{})
	h.cmd("ATE0\r", "\r\nOK\r\n")
	h.cmd("AT+CMEE=1\r", "\r\nOK\r\n")
	for _, step := range []struct{ line, want string }{
		{"AT+CGDCONT?\r", "\r\nOK\r\n"},
		{"AT+CGDCONT=16,\"IP\",\"mms\"\r", "\r\n+CME ERROR: 50\r\n"},
		{"AT+CGDCONT=2,\"X25\",\"mms\"\r", "\r\n+CME ERROR: 50\r\n"},
		{"AT+CGACT=1,2\r", "\r\n+CME ERROR: 50\r\n"},
		{"AT+CGDCONT=2,\"IP\",\"MMS.Carrier\"\r", "\r\nOK\r\n"},
		{"AT+CGDCONT?\r", "\r\n+CGDCONT: 2,\"IP\",\"MMS.Carrier\",\"0.0.0.0\",0,0\r\n\r\nOK\r\n"},
		{"AT+CGACT=1,2\r", "\r\nOK\r\n"},
		{"AT+CGACT?\r", "\r\n+CGACT: 2,1\r\n\r\nOK\r\n"},
		{"AT+CGDCONT=2,\"IP\",\"other\"\r", "\r\nERROR\r\n"},
		{"AT+CGACT=0,2\r", "\r\nOK\r\n"},
		{"AT+CGDCONT=2\r", "\r\nOK\r\n"},
		{"AT+CGACT?\r", "\r\nOK\r\n"},
		{"AT+CGACT=?\r", "\r\n+CGACT: (0,1)\r\n\r\nOK\r\n"},
	} {
		h.cmd(step.line, step.want)
	}
}
