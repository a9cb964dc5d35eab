package sms

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/warthog618/sms/encoding/tpdu"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// TestOutboxReportBeforeMRStored: a fast network can report on a part in the
// instant between the modem's +CMGS answer and the outbox's write of that
// part's MR. Here the report even arrives before the part is sent: it
// matches nothing at first, is kept as a bad PDU (so acknowledging it loses
// nothing), and matches on a second look once the MR is stored.
func TestOutboxReportBeforeMRStored(t *testing.T) {
	o := newOutLine(t, modemsim.Options{}, Config{StatusReports: true}, true)
	var rep tpdu.TPDU
	if err := rep.SetSmsType(tpdu.SmsStatusReport); err != nil {
		t.Fatal(err)
	}
	rep.MR = 1 // the simulator's first TP-MR
	rep.RA = tpdu.NewAddress(tpdu.FromNumber(strings.TrimPrefix(bob, "+")))
	rep.RA.SetTypeOfNumber(tpdu.TonInternational)
	rep.SCTS = tpdu.Timestamp{Time: time.Now().Truncate(time.Second)}
	rep.DT = tpdu.Timestamp{Time: time.Now().Truncate(time.Second)}
	rep.ST = 0 // delivered
	b, err := rep.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := o.sim.DeliverPDU("00" + strings.ToUpper(hex.EncodeToString(b))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the early report is read off the SIM", func() bool { return o.sim.Stored() == 0 && len(o.sim.Pending()) == 0 })
	o.enqueue(t, "$early", bob, "hi")
	got := o.out.wait(t, "$early", OutcomeDelivered)
	if got.Kind != OutcomeDelivered {
		t.Fatalf("outcome %v, want delivered", got.Kind)
	}
}
