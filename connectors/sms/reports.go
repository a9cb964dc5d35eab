package sms

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/connectors/sms/pdu"
)

// handleReport matches a received status report (+CDS, +CDSI, or found in
// storage; the inbox reads and acknowledges it) to the sent part it is
// about and records the outcome it completes. It reports whether the
// report is safely stored, i.e. may be acknowledged or deleted.
func (o *outbox) handleReport(ctx context.Context, msg *pdu.Message, source string, idx int, hexPDU string) bool {
	o.log.Info("received status report", zap.Int("mr", msg.MR), zap.Uint8("status", msg.Status),
		zap.String("recipient", phone.Mask(msg.Address)), zap.Time("discharge", msg.Discharge))
	res, err := o.store.statusReport(ctx, msg)
	if err != nil {
		o.log.Error("failed to store status report; leaving it on the modem", zap.Int("index", idx), zap.Error(err))
		return false
	}
	if !res.matched {
		o.log.Info("kept status report that matches no sent SMS part yet", zap.Int("mr", msg.MR))
		if !o.keepBad(ctx, source, idx, hexPDU, fmt.Sprintf("status report for MR %d matches no sent part", msg.MR)) {
			return false
		}
		o.rematchLater(ctx, msg, hexPDU)
		return true
	}
	if res.outcome != "" {
		o.log.Info("confirmed SMS by status report", zap.String("id", res.msgID), zap.String("outcome", string(res.outcome)))
		o.wakeOutcomes()
	}
	return true
}

// rematchReport waits are the pauses before a status report that matched
// no part is matched again.
var rematchReportWaits = []time.Duration{200 * time.Millisecond, time.Second, 5 * time.Second}

// rematchLater matches a status report again a little later. A fast network
// can report on a part in the instant between the modem's +CMGS answer and
// the outbox's write of that part's MR; the report is already kept as a bad
// PDU (so acknowledging it lost nothing) and is taken out of there once it
// matches. The goroutine belongs to the outbox and ends with stop.
func (o *outbox) rematchLater(ctx context.Context, msg *pdu.Message, hexPDU string) {
	if o.isClosed() {
		return
	}
	o.goroutines.start(ctx, func(ctx context.Context) {
		for _, wait := range rematchReportWaits {
			select {
			case <-ctx.Done():
				return
			case <-o.after(wait):
			}
			res, err := o.store.statusReport(ctx, msg)
			if err != nil || !res.matched {
				continue
			}
			o.log.Info("matched a status report on a second look", zap.Int("mr", msg.MR), zap.String("id", res.msgID))
			if err := o.store.forgetBad(ctx, hexPDU); err != nil {
				o.log.Warn("failed to drop a matched status report from the bad PDUs", zap.Error(err))
			}
			if res.outcome != "" {
				o.wakeOutcomes()
			}
			return
		}
	})
}

// reportClass classifies a TP-ST value (3GPP TS 23.040 9.2.3.15).
type reportKind int

const (
	reportDelivered reportKind = iota
	reportPending
	reportFailed
)

func reportClass(st byte) reportKind {
	switch {
	case st < 0x20:
		return reportDelivered // 0x00-0x02 completed; 0x03-0x1F reserved/SC-specific "completed"
	case st < 0x40:
		return reportPending // temporary error, SC still trying
	default:
		return reportFailed // permanent error, or temporary and SC gave up
	}
}

// statusReasons words the TP-ST failure values.
var statusReasons = map[byte]string{
	0x40: "the network could not deliver it (remote procedure error)",
	0x41: "the recipient's phone cannot receive this kind of message",
	0x42: "the recipient's phone refused the message",
	0x43: "the number cannot be reached",
	0x44: "the network could not deliver it with the requested quality of service",
	0x45: "the network has no route to the recipient",
	0x46: "it expired before the recipient's phone could be reached (switched off or out of coverage for too long)",
	0x47: "the message was deleted before delivery",
	0x48: "the message centre deleted the message",
	0x49: "the message centre no longer has the message",
	0x60: "the network was congested and gave up",
	0x61: "the recipient's phone was busy and the network gave up",
	0x62: "the recipient's phone did not answer and the network gave up",
	0x63: "the recipient's service refused it and the network gave up",
	0x64: "the network could not deliver it with the requested quality of service and gave up",
	0x65: "the recipient's phone reported an error and the network gave up",
}

// statusReason words a failure status of a status report.
func statusReason(st byte) string {
	if r, ok := statusReasons[st]; ok {
		return "not delivered: " + r
	}
	return fmt.Sprintf("not delivered: the network gave up (status 0x%02X)", st)
}
