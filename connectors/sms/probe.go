package sms

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/sms/at"
)

// ProbeReport is what Probe learned about a modem.
type ProbeReport struct {
	// Device describes the port as opened (by-id links resolved).
	Device string
	// Status is the modem, SIM and network as the status command shows
	// them (State is StateReady; QueueLength and LastRecovery stay zero).
	Status ModemStatus
	// Storage is the message memory of +CPMS? (e.g. "SM"), "" when the
	// modem did not say; StorageUsed and StorageTotal count its slots.
	Storage                   string
	StorageUsed, StorageTotal int
}

// Probe opens cfg.Device, reads what an operator needs to know before a
// start (SIM state, identity, operator, registration, signal, SMSC,
// message storage) and closes it again. Unlike Open it changes nothing on
// the modem that matters to a later start: it never enters a PIN, selects
// no storage and sets no indications. It fails when the port cannot be
// opened or the modem does not answer.
func Probe(ctx context.Context, cfg Config, log *zap.Logger) (*ProbeReport, error) {
	cfg = withDefaults(cfg)
	if log == nil {
		log = zap.NewNop()
	}
	port, desc, err := at.OpenPort(ctx, cfg.Device, cfg.Baud)
	if err != nil {
		return nil, err
	}
	m := at.New(port, at.Options{Timeout: cfg.CommandTimeout, Log: log})
	defer func() { _ = m.Close() }()
	m.Escape()
	if _, err := m.Command(ctx, "E0", 0); err != nil {
		return nil, fmt.Errorf("talk to the modem on %s: %w (is it the AT port? try the other ports of the device)", desc, err)
	}
	_, _ = m.Command(ctx, "+CMEE=1", 0)
	k := &link{cfg: cfg, log: log}
	r := &ProbeReport{Device: desc, Status: ModemStatus{State: StateReady, RSSI: 99}}
	if err := k.readStatus(ctx, m, &r.Status); err != nil {
		return nil, fmt.Errorf("read the modem on %s: %w", desc, err)
	}
	if info, err := m.Command(ctx, "+CPMS?", 0); err == nil {
		r.Storage, r.StorageUsed, r.StorageTotal = parseCPMS(info)
	}
	return r, nil
}

// parseCPMS reads the first memory of a +CPMS? answer:
// +CPMS: "SM",3,30,"SM",3,30,"SM",3,30.
func parseCPMS(info []string) (mem string, used, total int) {
	for _, line := range info {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "+CPMS:")
		if !ok {
			continue
		}
		p := at.SplitParams(v)
		if len(p) < 3 {
			return "", 0, 0
		}
		used, err1 := strconv.Atoi(p[1])
		total, err2 := strconv.Atoi(p[2])
		if err1 != nil || err2 != nil {
			return "", 0, 0
		}
		return p[0], used, total
	}
	return "", 0, 0
}
