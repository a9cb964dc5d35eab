package sms

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/sms/at"
)

// Bearer is the packet data context the MMS data path uses (3GPP 27.007
// §10.1.1 +CGDCONT, §10.1.10 +CGACT). APN "" means none is set up.
type Bearer struct {
	// CID is the context identifier (1-15 on most modems; default 1).
	CID int
	// APN is the access point name that reaches the carrier's MMSC.
	APN string
}

// setUpBearer defines the context (only when +CGDCONT? shows another APN
// on it, so a context the modem already has is not torn down) and
// activates it. It never fails the line: SMS works without it; a refusal
// is logged with what to do.
func (k *link) setUpBearer(ctx context.Context, m *at.Session) {
	b := k.cfg.MMSBearer
	if b.APN == "" {
		return
	}
	if err := bringUp(ctx, m, b); err != nil {
		k.log.Error("failed to bring up the MMS data bearer; MMS will not work until it is up",
			zap.Int("cid", b.CID), zap.String("apn", b.APN), zap.Error(err))
		return
	}
	k.log.Info("brought up the MMS data bearer", zap.Int("cid", b.CID), zap.String("apn", b.APN))
}

func bringUp(ctx context.Context, m *at.Session, b Bearer) error {
	if b.CID == 0 {
		b.CID = 1
	}
	cid := strconv.Itoa(b.CID)
	defined, err := m.Command(ctx, "+CGDCONT?", 0)
	if err != nil {
		return fmt.Errorf("read contexts (AT+CGDCONT?): %w", err)
	}
	if contextAPN(defined, cid) != strings.ToLower(b.APN) {
		if _, err := m.Command(ctx, fmt.Sprintf(`+CGDCONT=%s,"IP","%s"`, cid, b.APN), 0); err != nil {
			return fmt.Errorf("define context %s (AT+CGDCONT): %w; check network.mms.bearer_cid against AT+CGDCONT=? and the APN", cid, err)
		}
	}
	active, err := m.Command(ctx, "+CGACT?", 0)
	if err == nil && slicesContainsPrefix(active, "+CGACT: "+cid+",1") {
		return nil
	}
	if _, err := m.Command(ctx, "+CGACT=1,"+cid, 0); err != nil {
		if errors.Is(err, ErrTimeout) {
			return fmt.Errorf("activate context %s (AT+CGACT): %w; the modem may still be registering", cid, err)
		}
		return fmt.Errorf("activate context %s (AT+CGACT): %w; check the APN with the carrier and that the SIM has data", cid, err)
	}
	return nil
}

// contextAPN returns the APN (lower case) of context cid in +CGDCONT? lines,
// "" when it is not defined.
func contextAPN(lines []string, cid string) string {
	for _, l := range lines {
		rest, ok := strings.CutPrefix(l, "+CGDCONT:")
		if !ok {
			continue
		}
		f := strings.Split(strings.TrimSpace(rest), ",")
		if len(f) >= 3 && f[0] == cid {
			return strings.ToLower(strings.Trim(f[2], `"`))
		}
	}
	return ""
}

func slicesContainsPrefix(lines []string, p string) bool {
	for _, l := range lines {
		if strings.HasPrefix(strings.ReplaceAll(l, " ", ""), strings.ReplaceAll(p, " ", "")) {
			return true
		}
	}
	return false
}
