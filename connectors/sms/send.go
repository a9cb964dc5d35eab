package sms

import (
	"context"
	"errors"
	"fmt"
	"github.com/bubbled/bubbled/connectors/sms/at"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/sms/pdu"
)

// Send texts to (international "+E164" or a national number) in PDU mode,
// as several concatenated parts when needed, each with AT+CMGS and
// Config.SendTimeout. Errors:
//   - wrapping pdu.ErrTooLong when the text needs more than Config.MaxParts;
//   - wrapping *CMSError when the network or modem refused a part
//     (CMSError.Temporary says whether retrying later makes sense);
//   - wrapping ErrSendUnknown when a part reached the modem but was not
//     confirmed in time: do not resend blindly;
//   - wrapping ErrTimeout/ErrClosed/ErrUnresponsive when nothing was sent
//     for that part.
//
// Part errors read "send PDU part i/n: ..."; the SendResult then lists the
// parts sent before it. A multipart message cannot be taken back: parts sent
// before a failure reach the recipient. Concurrent Sends are serialised.
func (l *Line) Send(ctx context.Context, to, text string) (*SendResult, error) {
	m, err := l.current()
	if err != nil {
		return nil, err
	}
	if err := l.ensurePDU(ctx, m); err != nil {
		return nil, fmt.Errorf("send SMS: %w", err)
	}
	var refErr error
	parts, err := pdu.EncodeSubmit(to, text, pdu.SubmitOptions{
		StatusReport: l.cfg.StatusReports,
		MaxParts:     l.cfg.MaxParts,
		NextRef: func() uint16 {
			ref, err := l.store.nextRef(ctx)
			if err != nil && refErr == nil {
				refErr = err
			}
			return ref
		},
	})
	if err != nil {
		return nil, fmt.Errorf("encode SMS to %s: %w", maskNumber(to), err)
	}
	if refErr != nil {
		return nil, fmt.Errorf("encode SMS to %s: %w", maskNumber(to), refErr)
	}

	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	if len(parts) > 1 {
		l.keepLinkOpen(ctx, m)
	}
	res := &SendResult{}
	for i, p := range parts {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("send PDU part %d/%d: %w", i+1, len(parts), err)
		}
		info, err := m.SMSCommand(ctx, "+CMGS="+strconv.Itoa(p.TPDULen), p.Hex, l.cfg.SendTimeout, 0)
		if err != nil {
			l.log.Warn("failed to send SMS part", zap.String("to", maskNumber(to)), zap.Int("part", i+1), zap.Int("parts", len(parts)), zap.Error(err))
			return res, fmt.Errorf("send PDU part %d/%d: %w", i+1, len(parts), err)
		}
		res.Parts++
		res.MRs = append(res.MRs, parseCMGS(info))
	}
	l.log.Info("sent SMS", zap.String("to", maskNumber(to)), zap.Int("parts", res.Parts), zap.Ints("mrs", res.MRs))
	return res, nil
}

// keepLinkOpen asks the modem to keep the SMS relay link open between the
// parts of one message (AT+CMMS=2), which makes multipart sends faster.
// Modems without it answer ERROR; we then stop asking.
func (l *Line) keepLinkOpen(ctx context.Context, m *at.Session) {
	l.mu.Lock()
	skip := l.noCMMS
	l.mu.Unlock()
	if skip {
		return
	}
	if _, err := m.Command(ctx, "+CMMS=2", 0); err != nil {
		var cms *CMSError
		var cme *CMEError
		if at.IsPlainError(err) || errors.As(err, &cms) || errors.As(err, &cme) {
			l.log.Debug("modem does not support AT+CMMS; sending parts without it", zap.Error(err))
			l.mu.Lock()
			l.noCMMS = true
			l.mu.Unlock()
		}
	}
}

// parseCMGS returns the <mr> of a "+CMGS: <mr>[,<scts>]" line, or -1.
func parseCMGS(info []string) int {
	for _, line := range info {
		if v, ok := strings.CutPrefix(line, "+CMGS:"); ok {
			if mr, err := strconv.Atoi(at.SplitParams(v)[0]); err == nil {
				return mr
			}
		}
	}
	return -1
}

// maskNumber hides all but the last two digits of a phone number for
// info-level logs; alphanumeric senders are kept.
func maskNumber(n string) string {
	digits := 0
	for _, c := range n {
		if c >= '0' && c <= '9' {
			digits++
		}
	}
	if digits < 4 || digits*2 < len(n) {
		return n
	}
	var b strings.Builder
	seen := 0
	for _, c := range n {
		if c >= '0' && c <= '9' {
			seen++
			if seen <= digits-2 {
				b.WriteByte('*')
				continue
			}
		}
		b.WriteRune(c)
	}
	return b.String()
}
