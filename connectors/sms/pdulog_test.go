package sms

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// TestBadPDULoggedWithoutContent: an undecodable PDU is logged at warn
// only as its length and a short hash that finds it in
// bubbled_sms_bad_pdu, never whole (it carries the sender and the text).
func TestBadPDULoggedWithoutContent(t *testing.T) {
	sim := startSim(t, modemsim.Options{})
	db := testDB(t)
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(zapcore.NewTee(core, testLog(t).Core()))
	cfg := Config{ID: "line1", Device: sim.Path(), CommandTimeout: 2 * time.Second, SendTimeout: 5 * time.Second}
	l := NewLine(cfg, db, log, newRecorder().handle)
	l.retry = fastRetry
	ctx := testCtx(t)
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	if err := l.StartReceiving(ctx); err != nil {
		t.Fatal(err)
	}
	// SMSC +15550000000, then an SMS-DELIVER cut inside its address.
	const bad = "07915155000000F0040B9151"
	if err := sim.DeliverPDU(bad); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bad PDU logged", func() bool { return logs.FilterMessageSnippet("failed to decode received PDU").Len() == 1 })
	e := logs.FilterMessageSnippet("failed to decode received PDU").All()[0]
	sum := sha256.Sum256([]byte(bad))
	m := e.ContextMap()
	if m["pdu_bytes"] != int64(len(bad)/2) || m["pdu_sha256"] != hex.EncodeToString(sum[:6]) {
		t.Errorf("PDU fields = %v, want pdu_bytes %d and pdu_sha256 %s", m, len(bad)/2, hex.EncodeToString(sum[:6]))
	}
	for _, entry := range logs.All() {
		if s := fmt.Sprintf("%s %v", entry.Message, entry.ContextMap()); strings.Contains(s, bad) || strings.Contains(s, "5155000000") {
			t.Errorf("a %s line shows the PDU: %s", entry.Level, s)
		}
	}
	var stored string
	if err := db.QueryRow(ctx, `SELECT pdu FROM bubbled_sms_bad_pdu WHERE line_id='line1'`).Scan(&stored); err != nil || stored != bad {
		t.Errorf("bubbled_sms_bad_pdu holds %q, %v; want the PDU", stored, err)
	}
}
