package sms

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// TestReassemblyTimeout: a long SMS with a part that never comes is
// delivered after Config.ReassemblyTimeout with the gap marked and named,
// by the running line's timer, and after a restart by the new line (the
// deadline is the parts' stored reception time, so it survives).
func TestReassemblyTimeout(t *testing.T) {
	const from = "+15551234567"
	long := strings.Repeat("0123456789", 40) // 3 GSM 7-bit parts
	pdus := deliverPDUs(t, from, long)
	if len(pdus) != 3 {
		t.Fatalf("the network made %d parts, want 3", len(pdus))
	}
	sim := startSim(t, modemsim.Options{})
	db := testDB(t)
	cfg := Config{ID: "line1", Device: sim.Path(), ReassemblyTimeout: 2 * time.Second}
	ctx := testCtx(t)

	check := func(m *Message, want []int) {
		t.Helper()
		for _, seq := range want {
			if mark := missingMark(seq, 3); !strings.Contains(m.Text, mark) {
				t.Errorf("text %q lacks %q", m.Text, mark)
			}
		}
		if !slices.Equal(m.Missing, want) || m.Parts != 3-len(want) {
			t.Errorf("delivered %d parts missing %v, want missing %v", m.Parts, m.Missing, want)
		}
	}

	// Running: parts 1 and 3 come, 2 never does.
	l1, rec1 := openLine(t, db, cfg, 0)
	if err := l1.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{pdus[0], pdus[2]} {
		if err := sim.DeliverPDU(p); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "parts read off the SIM", func() bool { return sim.Stored() == 0 })
	rec1.expectNone(t, time.Second)
	check(rec1.wait(t, ctx), []int{2})

	// Restart in the middle: part 1 arrives, the line closes before the
	// deadline, and the new line delivers it once the deadline has passed.
	first := deliverPDUs(t, from, "another "+long)
	if err := sim.DeliverPDU(first[0]); err != nil {
		t.Fatal(err)
	}
	eventually(t, "part read off the SIM", func() bool { return sim.Stored() == 0 })
	if err := l1.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(cfg.ReassemblyTimeout + 500*time.Millisecond)
	l2, rec2 := openLine(t, db, cfg, 0)
	if err := l2.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	check(rec2.wait(t, ctx), []int{2, 3})
}

func TestStaleCheck(t *testing.T) {
	for _, c := range []struct{ timeout, want time.Duration }{
		{24 * time.Hour, staleCheckInterval}, {time.Minute, 15 * time.Second}, {time.Second, time.Second},
	} {
		if got := staleCheck(c.timeout); got != c.want {
			t.Errorf("staleCheck(%v) = %v, want %v", c.timeout, got, c.want)
		}
	}
}

func TestMissingNote(t *testing.T) {
	for _, c := range []struct {
		m    Message
		want string
	}{
		{Message{Parts: 3}, ""},
		{Message{Parts: 2, Missing: []int{2}}, "Part 2 of 3 of this SMS never arrived; the text shows where. The sender may send it again."},
		{Message{Parts: 1, Missing: []int{1, 3}}, "Parts 1 and 3 of 3 of this SMS never arrived; the text shows where. The sender may send it again."},
		{Message{Parts: 1, Missing: []int{2, 3, 4}}, "Parts 2, 3 and 4 of 4 of this SMS never arrived; the text shows where. The sender may send it again."},
	} {
		if got := c.m.MissingNote(); got != c.want {
			t.Errorf("MissingNote(%v) = %q, want %q", c.m.Missing, got, c.want)
		}
	}
}
