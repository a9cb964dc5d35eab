package modemsim

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warthog618/modem/at"
	"github.com/warthog618/modem/gsm"
	"go.bug.st/serial"
)

// TestWarthogInterop drives the simulator with github.com/warthog618/modem
// v0.4.0 (at + gsm) over the real pty, as a third-party AT client.
func TestWarthogInterop(t *testing.T) {
	sim := startSim(t, Options{Echo: true, OwnNumber: "+15550001111"})
	port, err := serial.Open(sim.Path(), &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { port.Close() })
	a := at.New(port, at.WithTimeout(3*time.Second))
	g := gsm.New(a, gsm.WithPDUMode)
	// Init: ESC CR LF, ATZ, ATE0 (while echo is on), AT+GCAP (needs
	// +CGSM), AT+CMGF=0, AT+CMEE=2.
	if err := g.Init(); err != nil {
		t.Fatalf("gsm Init: %v", err)
	}

	info, err := g.Command("+CNUM")
	if err != nil || len(info) != 1 || info[0] != `+CNUM: "","+15550001111",145` {
		t.Fatalf("+CNUM = %q, %v", info, err)
	}
	if _, err := g.Command("+CMGR=99"); err == nil || err.Error() != "CMS Error: invalid memory index" {
		t.Fatalf("+CMGR=99 error = %v, want verbose CMS error", err)
	}
	var cms at.CMSError
	if _, err := g.Command("+CMGR=99"); !errors.As(err, &cms) {
		t.Fatalf("+CMGR=99 error %T, want at.CMSError", err)
	}

	// Sending: one short and one long message through AT+CMGS.
	mr, err := g.SendShortMessage("+15551234567", "hello via warthog618/modem")
	if err != nil || mr != "1" {
		t.Fatalf("SendShortMessage = %q, %v", mr, err)
	}
	long := strings.Repeat("Long message through the gsm package. ", 6)
	mrs, err := g.SendLongMessage("+15551234567", long)
	if err != nil || len(mrs) != 2 || mrs[0] != "2" || mrs[1] != "3" {
		t.Fatalf("SendLongMessage = %q, %v", mrs, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	sent, err := sim.WaitSent(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if sent[0].Text != "hello via warthog618/modem" || sent[1].Text != long || sent[1].Parts != 2 || sent[1].To != "+15551234567" {
		t.Fatalf("Sent() = %+v", sent)
	}

	// Receiving with +CMT and +CNMA (gsm sends +CSMS=1, +CNMI=1,2,0,0,0).
	msgs := make(chan gsm.Message, 4)
	rxErrs := make(chan error, 4)
	if err := g.StartMessageRx(func(m gsm.Message) { msgs <- m }, func(err error) { rxErrs <- err }); err != nil {
		t.Fatalf("StartMessageRx: %v", err)
	}
	if got := sim.CNMI(); got != "1,2,0,0,0" {
		t.Fatalf("CNMI = %s", got)
	}
	inbound := "Reply from a phone 😀 " + strings.Repeat("x", 70)
	if err := sim.Deliver("+15557654321", inbound); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		if m.Number != "+15557654321" || m.Message != inbound || len(m.TPDUs) != 2 {
			t.Fatalf("received %+v", m)
		}
	case err := <-rxErrs:
		t.Fatalf("receive error: %v", err)
	case <-time.After(ioTimeout):
		t.Fatal("no message received")
	}
	// Both parts were acknowledged: nothing pending, nothing stored,
	// routing still on.
	waitFor(t, func() bool { return sim.CNMI() == "1,2,0,0,0" && len(sim.Pending()) == 0 && sim.Stored() == 0 })
	g.StopMessageRx()

	// Store and notify with an indication handler, then read it.
	cmti := make(chan []string, 1)
	if err := a.AddIndication("+CMTI:", func(info []string) { cmti <- info }); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Command("+CNMI=2,1,0,0,0"); err != nil {
		t.Fatal(err)
	}
	if err := sim.Deliver("+15557654321", "stored one"); err != nil {
		t.Fatal(err)
	}
	select {
	case info := <-cmti:
		if info[0] != `+CMTI: "SM",1` {
			t.Fatalf("indication %q", info)
		}
	case <-time.After(ioTimeout):
		t.Fatal("no +CMTI")
	}
	info, err = a.Command("+CMGR=1")
	// at v0.4.0 may also hand the +CMTI line to the next command's info
	// (a known client bug, see notes/modem.md bug 3): drop it.
	info = dropPrefix(info, "+CMTI:")
	if err != nil || len(info) != 2 || !strings.HasPrefix(info[0], "+CMGR: 0,,") {
		t.Fatalf("+CMGR=1 = %q, %v", info, err)
	}
	if got := decodeText(t, info[1]); got != "stored one" {
		t.Fatalf("stored text %q", got)
	}

	// A hung modem times the client out; unplugging closes it.
	sim.Hang(true)
	if _, err := a.Command("", at.WithTimeout(200*time.Millisecond)); !errors.Is(err, at.ErrDeadlineExceeded) {
		t.Fatalf("command to hung modem: %v, want deadline exceeded", err)
	}
	sim.Unplug()
	select {
	case <-a.Closed():
	case <-time.After(ioTimeout):
		t.Fatal("at did not notice the unplug")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dropPrefix(lines []string, prefix string) []string {
	var out []string
	for _, l := range lines {
		if !strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}
