package sms

import (
	"strings"
	"testing"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// TestProbe: Probe reads the SIM, network and storage of a modem without
// entering the PIN, and fails with a useful error on a missing device.
func TestProbe(t *testing.T) {
	t.Run("ready SIM with a stored SMS", func(t *testing.T) {
		sim := startSim(t, modemsim.Options{})
		if err := sim.Deliver("+15557654321", "waiting on the SIM"); err != nil {
			t.Fatal(err)
		}
		r, err := Probe(testCtx(t), Config{Device: sim.Path()}, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		st := r.Status
		if st.SIM != "READY" || st.Operator != "Simulated" || !st.Registered || st.SMSC != "+15550000000" || st.SignalDBm == 0 {
			t.Errorf("status %+v", st)
		}
		if r.Storage != "SM" || r.StorageUsed != 1 || r.StorageTotal != 30 {
			t.Errorf("storage %q %d/%d, want SM 1/30", r.Storage, r.StorageUsed, r.StorageTotal)
		}
	})
	t.Run("locked SIM", func(t *testing.T) {
		sim := startSim(t, modemsim.Options{PIN: "1234"})
		r, err := Probe(testCtx(t), Config{Device: sim.Path(), PIN: "1234"}, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		if r.Status.SIM != "SIM PIN" {
			t.Errorf("SIM %q, want SIM PIN", r.Status.SIM)
		}
		for _, c := range sim.Commands() {
			if strings.HasPrefix(c, "AT+CPIN=") {
				t.Errorf("Probe entered the PIN: %s", c)
			}
		}
	})
	t.Run("missing device", func(t *testing.T) {
		_, err := Probe(testCtx(t), Config{Device: t.TempDir() + "/ttyUSB9"}, testLog(t))
		if err == nil || !strings.Contains(err.Error(), "ttyUSB9") {
			t.Errorf("Probe of a missing device: %v", err)
		}
	})
}
