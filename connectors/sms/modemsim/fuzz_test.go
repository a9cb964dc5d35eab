package modemsim

import (
	"strings"
	"testing"
)

// FuzzCommandLine feeds arbitrary command lines (and, after a +CMGS or
// +CNMA prompt, arbitrary PDU input) to the executor: it must not panic and
// must frame every answer.
func FuzzCommandLine(f *testing.F) {
	for _, seed := range []string{
		"AT", "ATE0V1", "AT+CMGF=0;+CMEE=2", "AT+CMGS=23", "AT+CPIN=\"1234\"",
		"AT+CNMI=2,2,0,1,0", "AT+CMGL=4", "AT+CMGD=1,4", "ATS3?", "AT+CPMS=\"SM\",\"SM\"",
		"AT+CNMA=2,5", "at+cmgr=1", "AT&F&W", "AT+CSCA=\"+4477\",145",
	} {
		f.Add(seed, "0001000B915155214365F7000001E8")
	}
	sim, err := Start(Options{PIN: "1234"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { sim.Close() })
	f.Fuzz(func(t *testing.T, line, pdu string) {
		sim.mu.Lock()
		defer sim.mu.Unlock()
		r := sim.execLineLocked(line)
		if r.text != "" && !strings.HasSuffix(r.text, "\r\n") && !strings.HasSuffix(r.text, "\r\n> ") {
			t.Fatalf("unframed answer %q to %q", r.text, line)
		}
		if r.prompt != nil {
			info, final := sim.submitLocked(r.prompt.length, strings.ToUpper(pdu))
			if final == "" && len(info) != 1 {
				t.Fatalf("submit of %q gave %q", pdu, info)
			}
		}
	})
}
