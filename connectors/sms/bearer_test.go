package sms

import (
	"testing"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// TestMMSBearer: Open defines and activates the MMS context through the
// AT port; a context already right is left alone on the next open; a cid
// the modem refuses leaves the line working for SMS.
func TestMMSBearer(t *testing.T) {
	s := newSimLine(t, modemsim.Options{}, Config{MMSBearer: Bearer{CID: 3, APN: "mms.example"}})
	if b := s.sim.Bearers(); b[3] != (modemsim.Bearer{APN: "mms.example", Active: true}) || len(b) != 1 {
		t.Fatalf("bearers after open: %+v", b)
	}
	_ = s.line.Close()
	defines := func() int {
		n := 0
		for _, c := range s.sim.Commands() {
			if len(c) > 12 && c[:12] == "AT+CGDCONT=3" {
				n++
			}
		}
		return n
	}
	before := defines()
	if before != 1 {
		t.Fatalf("first open defined the context %d times, want 1 (commands %q)", before, s.sim.Commands())
	}
	l2, _ := openLine(t, s.db, s.cfg, 0)
	if n := defines() - before; n != 0 {
		t.Errorf("redefined a context that was already right (%d times)", n)
	}
	_ = l2.Close()

	bad := newSimLine(t, modemsim.Options{}, Config{MMSBearer: Bearer{CID: 16, APN: "mms.example"}})
	if b := bad.sim.Bearers(); len(b) != 0 {
		t.Errorf("bearers with a refused cid: %+v", b)
	}
	if st := bad.line.State(); st != StateReady {
		t.Errorf("line state %v after a refused bearer, want ready", st)
	}
}
