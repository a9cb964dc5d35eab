package modemsim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warthog618/sms"
	"github.com/warthog618/sms/encoding/tpdu"
)

func TestCommandLineFraming(t *testing.T) {
	tests := []struct {
		name  string
		echo  bool
		lines []string // alternating: sent, expected
	}{
		{name: "echo on by option", echo: true, lines: []string{
			"AT\r", "AT\r\r\nOK\r\n",
		}},
		{name: "ATE0 echoed then silent", echo: true, lines: []string{
			"ATE0\r", "ATE0\r\r\nOK\r\n",
			"AT\r", "\r\nOK\r\n",
		}},
		{name: "ATE1 turns echo on", lines: []string{
			"ATE1\r", "\r\nOK\r\n",
			"AT\r", "AT\r\r\nOK\r\n",
		}},
		{name: "CRLF is one terminator", lines: []string{
			"AT\r\n", "\r\nOK\r\n",
			"AT+CSQ\r\n", "\r\n+CSQ: 20,99\r\n\r\nOK\r\n",
		}},
		{name: "LF alone terminates", lines: []string{
			"AT\n", "\r\nOK\r\n",
		}},
		{name: "lower case", lines: []string{
			"at+cgmi\r", "\r\nBubbled\r\n\r\nOK\r\n",
		}},
		{name: "several commands on one line", lines: []string{
			"AT+CMGF=0;+CMEE=1;+CMEE?\r", "\r\n+CMEE: 1\r\n\r\nOK\r\n",
		}},
		{name: "basic commands concatenated", echo: true, lines: []string{
			"ATE0V1Q0\r", "ATE0V1Q0\r\r\nOK\r\n",
			"AT\r", "\r\nOK\r\n",
		}},
		{name: "error stops the line", lines: []string{
			"AT+CMEE=1;+NOPE;+CMEE=2\r", "\r\nERROR\r\n",
			"AT+CMEE?\r", "\r\n+CMEE: 1\r\n\r\nOK\r\n",
		}},
		{name: "unknown command", lines: []string{
			"AT+FOO\r", "\r\nERROR\r\n",
		}},
		{name: "backspace edits the line", lines: []string{
			"AT+CSX\bQ\r", "\r\n+CSQ: 20,99\r\n\r\nOK\r\n",
		}},
		{name: "ATI", lines: []string{
			"ATI\r", "\r\nBubbled\r\nModemSim\r\nRevision: modemsim 1.0\r\n\r\nOK\r\n",
		}},
		{name: "identification", lines: []string{
			"AT+GCAP\r", "\r\n+GCAP: +CGSM\r\n\r\nOK\r\n",
			"AT+CGMM\r", "\r\nModemSim\r\n\r\nOK\r\n",
			"AT+CGMR\r", "\r\nmodemsim 1.0\r\n\r\nOK\r\n",
			"AT+CGSN\r", "\r\n490154203237518\r\n\r\nOK\r\n",
			"AT+CIMI\r", "\r\n001010123456789\r\n\r\nOK\r\n",
		}},
		{name: "network status", lines: []string{
			"AT+CREG?\r", "\r\n+CREG: 0,1\r\n\r\nOK\r\n",
			"AT+COPS?\r", "\r\n+COPS: 0,0,\"Simulated\",7\r\n\r\nOK\r\n",
			"AT+CSCA?\r", "\r\n+CSCA: \"+15550000000\",145\r\n\r\nOK\r\n",
		}},
		{name: "S registers", lines: []string{
			"ATS3?\r", "\r\n013\r\n\r\nOK\r\n",
			"ATS0=2\r", "\r\nOK\r\n",
			"ATS0?\r", "\r\n002\r\n\r\nOK\r\n",
		}},
		{name: "ATZ restores the profile", lines: []string{
			"ATE1+CMEE=2\r", "\r\nOK\r\n",
			"ATZ\r", "ATZ\r\r\nOK\r\n",
			"AT+CMEE?\r", "\r\n+CMEE: 0\r\n\r\nOK\r\n",
		}},
		{name: "text mode refused", lines: []string{
			"AT+CMGF=1\r", "\r\nERROR\r\n",
			"AT+CMGF?\r", "\r\n+CMGF: 0\r\n\r\nOK\r\n",
			"AT+CMGF=0\r", "\r\nOK\r\n",
		}},
		{name: "not a command line is ignored", lines: []string{
			"hello\r", "",
			"AT\r", "\r\nOK\r\n",
		}},
		{name: "ESC outside PDU input is ignored", lines: []string{
			"\x1b\r\nAT\r", "\r\nOK\r\n",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, Options{Echo: tc.echo})
			for i := 0; i < len(tc.lines); i += 2 {
				if tc.lines[i+1] == "" {
					h.send(tc.lines[i])
					continue
				}
				h.cmd(tc.lines[i], tc.lines[i+1])
			}
			h.quiet(100 * time.Millisecond)
		})
	}
}

func TestErrorShapes(t *testing.T) {
	tests := []struct {
		name string
		cmee string
		cmd  string
		want string
	}{
		{"cms plain", "0", "AT+CMGR=99\r", "\r\nERROR\r\n"},
		{"cms numeric", "1", "AT+CMGR=99\r", "\r\n+CMS ERROR: 321\r\n"},
		{"cms verbose", "2", "AT+CMGR=99\r", "\r\n+CMS ERROR: invalid memory index\r\n"},
		{"cme plain", "0", "AT+CPIN=\"1111\"\r", "\r\nERROR\r\n"},
		{"cme numeric", "1", "AT+CPIN=\"1111\"\r", "\r\n+CME ERROR: 3\r\n"},
		{"cme verbose", "2", "AT+CPIN=\"1111\"\r", "\r\n+CME ERROR: operation not allowed\r\n"},
		{"cnma unexpected", "1", "AT+CNMA\r", "\r\n+CMS ERROR: 340\r\n"},
		{"cnma unexpected verbose", "2", "AT+CNMA\r", "\r\n+CMS ERROR: no +CNMA acknowledgement expected\r\n"},
		{"other memory", "1", "AT+CPMS=\"ME\"\r", "\r\n+CMS ERROR: 302\r\n"},
		{"cmgs length out of range", "1", "AT+CMGS=0\r", "\r\n+CMS ERROR: 304\r\n"},
		{"syntax error is always ERROR", "2", "AT+CMEE=7\r", "\r\nERROR\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, Options{})
			h.cmd("AT+CMEE="+tc.cmee+"\r", "\r\nOK\r\n")
			h.cmd(tc.cmd, tc.want)
		})
	}
}

func TestCMGS(t *testing.T) {
	enc := sms.NewEncoder(sms.AsSubmit)
	pdus, lens := submitPDUs(t, enc, "+15551234567", "Hello from the host", false)
	pdu, l := pdus[0], lens[0]
	deliverHex := func() string {
		s := startSim(t, Options{})
		parts, err := s.encodeDeliverLocked("+15550000001", "x")
		if err != nil {
			t.Fatal(err)
		}
		return parts[0].hex
	}()
	tests := []struct {
		name     string
		echo     bool
		fail     int
		cmd      string
		prompt   string // expected answer to cmd
		input    string // PDU input after the prompt
		want     string // expected answer to input
		wantSent bool
	}{
		{name: "submit", cmd: fmt.Sprintf("AT+CMGS=%d\r", l), prompt: "\r\n> ",
			input: pdu + "\x1a", want: cmgsFrame(1), wantSent: true},
		{name: "submit lower-case hex, CRLF after command", cmd: fmt.Sprintf("AT+CMGS=%d\r\n", l), prompt: "\r\n> ",
			input: strings.ToLower(pdu) + "\x1a", want: cmgsFrame(1), wantSent: true},
		{name: "submit with echo", echo: true, cmd: fmt.Sprintf("AT+CMGS=%d\r", l), prompt: fmt.Sprintf("AT+CMGS=%d\r\r\n> ", l),
			input: pdu + "\x1a", want: pdu + "\x1a" + cmgsFrame(1), wantSent: true},
		{name: "PDU split over lines", cmd: fmt.Sprintf("AT+CMGS=%d\r", l), prompt: "\r\n> ",
			input: pdu[:10] + "\r\n" + pdu[10:] + "\x1a", want: cmgsFrame(1), wantSent: true},
		{name: "cancel with ESC", cmd: fmt.Sprintf("AT+CMGS=%d\r", l), prompt: "\r\n> ",
			input: pdu[:10] + "\x1b", want: "\r\nOK\r\n"},
		{name: "length mismatch", cmd: fmt.Sprintf("AT+CMGS=%d\r", l+1), prompt: "\r\n> ",
			input: pdu + "\x1a", want: "\r\n+CMS ERROR: 304\r\n"},
		{name: "not hex", cmd: fmt.Sprintf("AT+CMGS=%d\r", l), prompt: "\r\n> ",
			input: "00ZZ" + pdu[4:] + "\x1a", want: "\r\n+CMS ERROR: 304\r\n"},
		{name: "odd hex", cmd: fmt.Sprintf("AT+CMGS=%d\r", l), prompt: "\r\n> ",
			input: pdu[:len(pdu)-1] + "\x1a", want: "\r\n+CMS ERROR: 304\r\n"},
		{name: "deliver is not a submit", cmd: fmt.Sprintf("AT+CMGS=%d\r", tpduLen(t, deliverHex)), prompt: "\r\n> ",
			input: deliverHex + "\x1a", want: "\r\n+CMS ERROR: 304\r\n"},
		{name: "network failure", fail: 38, cmd: fmt.Sprintf("AT+CMGS=%d\r", l), prompt: "\r\n> ",
			input: pdu + "\x1a", want: "\r\n+CMS ERROR: 38\r\n"},
		{name: "no prompt without length", cmd: "AT+CMGS\r", prompt: "\r\nERROR\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, Options{})
			h.cmd("AT+CMEE=1\r", "\r\nOK\r\n")
			if tc.echo {
				h.cmd("ATE1\r", "\r\nOK\r\n")
			}
			if tc.fail != 0 {
				h.sim.FailNextCMGS(tc.fail)
			}
			h.cmd(tc.cmd, tc.prompt)
			if tc.input != "" {
				h.cmd(tc.input, tc.want)
			}
			h.quiet(50 * time.Millisecond)
			sent := h.sim.Sent()
			if !tc.wantSent {
				if len(sent) != 0 {
					t.Fatalf("Sent() = %+v, want none", sent)
				}
				return
			}
			if len(sent) != 1 {
				t.Fatalf("Sent() = %+v, want one message", sent)
			}
			got := sent[0]
			if got.To != "+15551234567" || got.Text != "Hello from the host" || got.Parts != 1 ||
				len(got.MRs) != 1 || got.MRs[0] != 1 || got.PDUs[0] != pdu || got.ConcatRef != 0 || got.StatusReport {
				t.Fatalf("Sent()[0] = %+v", got)
			}
		})
	}
}

func TestMultipartUCS2Reassembly(t *testing.T) {
	h := newHost(t, Options{})
	enc := sms.NewEncoder(sms.AsSubmit)
	text := strings.Repeat("Grüße 😀 from the bridge, ", 6) + "end 🎉"
	pdus, lens := submitPDUs(t, enc, "+447700900123", text, true)
	if len(pdus) < 3 {
		t.Fatalf("encoded %d parts, want at least 3 for this test", len(pdus))
	}
	// Send the parts out of order, the last one first.
	order := append([]int{len(pdus) - 1}, make([]int, 0, len(pdus))...)
	for i := 0; i < len(pdus)-1; i++ {
		order = append(order, i)
	}
	for n, i := range order {
		h.cmd(fmt.Sprintf("AT+CMGS=%d\r", lens[i]), "\r\n> ")
		h.cmd(pdus[i]+"\x1a", cmgsFrame(n+1))
		if n < len(pdus)-1 && len(h.sim.Sent()) != 0 {
			t.Fatalf("message complete after %d of %d parts", n+1, len(pdus))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	sent, err := h.sim.WaitSent(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	got := sent[0]
	if got.Text != text {
		t.Fatalf("text = %q, want %q", got.Text, text)
	}
	if got.To != "+447700900123" || got.Parts != len(pdus) || !got.StatusReport || got.ConcatRef == 0 {
		t.Fatalf("Sent = %+v", got)
	}
	// MRs are in part order: part i was sent as submission order index.
	for seq, i := range order {
		if got.MRs[i] != seq+1 {
			t.Fatalf("MRs = %v, want part %d to have MR %d", got.MRs, i+1, seq+1)
		}
		if got.PDUs[i] != pdus[i] {
			t.Fatalf("PDUs[%d] = %s, want %s", i, got.PDUs[i], pdus[i])
		}
	}
}

func TestWaitSentHonoursContext(t *testing.T) {
	sim := startSim(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := sim.WaitSent(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitSent error = %v, want deadline exceeded", err)
	}
}

func TestTPMRWrapsModulo256(t *testing.T) {
	h := newHost(t, Options{})
	h.sim.mu.Lock()
	h.sim.mr = 254
	h.sim.mu.Unlock()
	enc := sms.NewEncoder(sms.AsSubmit)
	for _, want := range []int{255, 0, 1} {
		pdus, lens := submitPDUs(t, enc, "+15551234567", "x", false)
		h.cmd(fmt.Sprintf("AT+CMGS=%d\r", lens[0]), "\r\n> ")
		h.cmd(pdus[0]+"\x1a", cmgsFrame(want))
	}
}

func TestStoreAndNotify(t *testing.T) {
	h := newHost(t, Options{})
	if err := h.sim.Deliver("+15557654321", "first message"); err != nil {
		t.Fatal(err)
	}
	h.expect("\r\n+CMTI: \"SM\",1\r\n")
	if err := h.sim.Deliver("+15557654321", "second"); err != nil {
		t.Fatal(err)
	}
	h.expect("\r\n+CMTI: \"SM\",2\r\n")
	msgs := h.sim.Messages()
	if len(msgs) != 2 {
		t.Fatalf("Messages() = %+v", msgs)
	}
	pdu := msgs[0].PDU
	tlen := tpduLen(t, pdu)
	h.cmd("AT+CMGR=1\r", fmt.Sprintf("\r\n+CMGR: 0,,%d\r\n%s\r\n\r\nOK\r\n", tlen, pdu))
	if got := decodeText(t, pdu); got != "first message" {
		t.Fatalf("text = %q", got)
	}
	if oa := decodeMT(t, pdu).OA.Number(); oa != "+15557654321" {
		t.Fatalf("OA = %q", oa)
	}
	// REC UNREAD became REC READ.
	h.cmd("AT+CMGR=1\r", fmt.Sprintf("\r\n+CMGR: 1,,%d\r\n%s\r\n\r\nOK\r\n", tlen, pdu))
	h.cmd("AT+CPMS?\r", "\r\n+CPMS: \"SM\",2,30,\"SM\",2,30,\"SM\",2,30\r\n\r\nOK\r\n")
	h.cmd("AT+CMGD=1\r", "\r\nOK\r\n")
	if n := h.sim.Stored(); n != 1 {
		t.Fatalf("Stored() = %d, want 1", n)
	}
	h.cmd("AT+CMGR=1\r", "\r\nOK\r\n")
	h.cmd("AT+CPMS=\"SM\",\"SM\",\"SM\"\r", "\r\n+CPMS: 1,30,1,30,1,30\r\n\r\nOK\r\n")
	// The next message takes the lowest free slot.
	if err := h.sim.Deliver("+15557654321", "third"); err != nil {
		t.Fatal(err)
	}
	h.expect("\r\n+CMTI: \"SM\",1\r\n")
}

func TestMultipartDeliveryDistinctRefs(t *testing.T) {
	h := newHost(t, Options{})
	long := strings.Repeat("0123456789", 20) // 200 GSM chars: 2 parts
	for i := 0; i < 2; i++ {
		if err := h.sim.Deliver("+15557654321", long); err != nil {
			t.Fatal(err)
		}
	}
	h.expect("\r\n+CMTI: \"SM\",1\r\n\r\n+CMTI: \"SM\",2\r\n\r\n+CMTI: \"SM\",3\r\n\r\n+CMTI: \"SM\",4\r\n")
	msgs := h.sim.Messages()
	refs := map[int]bool{}
	for _, m := range msgs {
		_, _, ref, ok := decodeMT(t, m.PDU).ConcatInfo()
		if !ok {
			t.Fatalf("part %d has no concat info", m.Index)
		}
		refs[ref] = true
	}
	if len(refs) != 2 {
		t.Fatalf("concat refs %v, want 2 distinct", refs)
	}
	if got := decodeText(t, msgs[0].PDU, msgs[1].PDU); got != long {
		t.Fatalf("text = %q", got)
	}
}

func TestCMGL(t *testing.T) {
	h := newHost(t, Options{ZeroBasedIndex: true})
	for _, txt := range []string{"one", "two"} {
		if err := h.sim.StoreOnly("+15557654321", txt); err != nil {
			t.Fatal(err)
		}
	}
	h.quiet(100 * time.Millisecond) // StoreOnly never notifies
	msgs := h.sim.Messages()
	list := func(stat int) string {
		var b strings.Builder
		b.WriteString("\r\n")
		for i, m := range msgs {
			if i > 0 {
				b.WriteString("\r\n")
			}
			fmt.Fprintf(&b, "+CMGL: %d,%d,,%d\r\n%s", m.Index, stat, tpduLen(t, m.PDU), m.PDU)
		}
		b.WriteString("\r\n\r\nOK\r\n")
		return b.String()
	}
	if msgs[0].Index != 0 || msgs[1].Index != 1 {
		t.Fatalf("indices %d,%d, want 0,1", msgs[0].Index, msgs[1].Index)
	}
	h.cmd("AT+CMGL=?\r", "\r\n+CMGL: (0-4)\r\n\r\nOK\r\n")
	h.cmd("AT+CMGL=1\r", "\r\nOK\r\n")
	h.cmd("AT+CMGL=4\r", list(0))
	h.cmd("AT+CMGL\r", "\r\nOK\r\n") // default <stat> 0: nothing unread any more
	h.cmd("AT+CMGL=1\r", list(1))
	h.cmd("AT+CMGL=\"ALL\"\r", "\r\nERROR\r\n")
	h.cmd("AT+CMGD=0,1\r", "\r\nOK\r\n")
	h.cmd("AT+CMGL=4\r", "\r\nOK\r\n")
}

func TestStoreFull(t *testing.T) {
	h := newHost(t, Options{StorageSize: 2})
	if err := h.sim.StoreOnly("+15557654321", "a"); err != nil {
		t.Fatal(err)
	}
	if err := h.sim.Deliver("+15557654321", strings.Repeat("x", 200)); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("Deliver of 2 parts into 1 free slot: %v, want ErrStoreFull", err)
	}
	if n := h.sim.Stored(); n != 1 {
		t.Fatalf("Stored() = %d after a failed delivery, want 1 (all or nothing)", n)
	}
	if err := h.sim.Deliver("+15557654321", "b"); err != nil {
		t.Fatal(err)
	}
	h.expect("\r\n+CMTI: \"SM\",2\r\n")
	if err := h.sim.Deliver("+15557654321", "c"); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("Deliver into full storage: %v, want ErrStoreFull", err)
	}
	h.cmd("AT+CMGD=1,4\r", "\r\nOK\r\n")
	if err := h.sim.Deliver("+15557654321", "c"); err != nil {
		t.Fatal(err)
	}
}

func TestDirectRouting(t *testing.T) {
	t.Run("acknowledged with CNMA", func(t *testing.T) {
		h := newHost(t, Options{})
		h.cmd("AT+CMEE=1;+CSMS=1\r", "\r\n+CSMS: 1,1,1\r\n\r\nOK\r\n")
		h.cmd("AT+CNMI=2,2,0,0,0\r", "\r\nOK\r\n")
		for _, txt := range []string{"one", "two"} {
			if err := h.sim.Deliver("+15557654321", txt); err != nil {
				t.Fatal(err)
			}
		}
		head, pdu := h.readURCWithPDU()
		if head != fmt.Sprintf("+CMT: ,%d", tpduLen(t, pdu)) || decodeText(t, pdu) != "one" {
			t.Fatalf("URC %q %q", head, pdu)
		}
		h.quiet(150 * time.Millisecond) // no second +CMT before the ack
		h.cmd("AT+CNMA\r", "\r\nOK\r\n")
		_, pdu = h.readURCWithPDU()
		if decodeText(t, pdu) != "two" {
			t.Fatalf("second +CMT text %q", decodeText(t, pdu))
		}
		h.cmd("AT+CNMA=0\r", "\r\nOK\r\n")
		h.cmd("AT+CNMA\r", "\r\n+CMS ERROR: 340\r\n")
		if h.sim.Stored() != 0 || len(h.sim.Pending()) != 0 {
			t.Fatalf("stored %d pending %v, want none", h.sim.Stored(), h.sim.Pending())
		}
	})
	t.Run("ack timeout disables routing", func(t *testing.T) {
		h := newHost(t, Options{AckTimeout: 200 * time.Millisecond})
		h.cmd("AT+CSMS=1;+CNMI=2,2,0,1,0\r", "\r\n+CSMS: 1,1,1\r\n\r\nOK\r\n")
		if err := h.sim.Deliver("+15557654321", "lost"); err != nil {
			t.Fatal(err)
		}
		if err := h.sim.Deliver("+15557654321", "queued"); err != nil {
			t.Fatal(err)
		}
		_, pdu := h.readURCWithPDU()
		h.quiet(400 * time.Millisecond)
		h.cmd("AT+CNMI?\r", "\r\n+CNMI: 2,0,0,0,0\r\n\r\nOK\r\n")
		if p := h.sim.Pending(); len(p) != 1 || p[0] != pdu {
			t.Fatalf("Pending() = %v, want the unacknowledged PDU", p)
		}
		// The queued message was re-routed under mt=0: stored silently.
		if h.sim.Stored() != 1 || h.sim.CNMI() != "2,0,0,0,0" {
			t.Fatalf("Stored() = %d CNMI %s", h.sim.Stored(), h.sim.CNMI())
		}
		h.cmd("AT+CNMA\r", "\r\nERROR\r\n")
		// The host re-enables routing; the network retries.
		h.cmd("AT+CNMI=2,1,0,0,0\r", "\r\nOK\r\n")
		if err := h.sim.RedeliverPending(); err != nil {
			t.Fatal(err)
		}
		h.expect("\r\n+CMTI: \"SM\",2\r\n")
		if len(h.sim.Pending()) != 0 {
			t.Fatalf("Pending() = %v after redelivery", h.sim.Pending())
		}
	})
	t.Run("negative ack keeps the message at the network", func(t *testing.T) {
		h := newHost(t, Options{})
		h.cmd("AT+CSMS=1;+CNMI=2,2,0,0,0\r", "\r\n+CSMS: 1,1,1\r\n\r\nOK\r\n")
		if err := h.sim.Deliver("+15557654321", "nack me"); err != nil {
			t.Fatal(err)
		}
		_, pdu := h.readURCWithPDU()
		h.cmd("AT+CNMA=2\r", "\r\nOK\r\n")
		if p := h.sim.Pending(); len(p) != 1 || p[0] != pdu || h.sim.CNMI() != "2,2,0,0,0" {
			t.Fatalf("Pending() = %v CNMI %s", p, h.sim.CNMI())
		}
	})
	t.Run("phase 2 needs no ack", func(t *testing.T) {
		h := newHost(t, Options{})
		h.cmd("AT+CNMI=2,2,0,0,0\r", "\r\nOK\r\n")
		for _, txt := range []string{"one", "two"} {
			if err := h.sim.Deliver("+15557654321", txt); err != nil {
				t.Fatal(err)
			}
		}
		_, p1 := h.readURCWithPDU()
		_, p2 := h.readURCWithPDU()
		if decodeText(t, p1) != "one" || decodeText(t, p2) != "two" {
			t.Fatal("wrong texts")
		}
		h.cmd("AT+CMEE=1;+CNMA\r", "\r\n+CMS ERROR: 340\r\n")
	})
	t.Run("class 2 is stored even with mt=2", func(t *testing.T) {
		h := newHost(t, Options{})
		h.cmd("AT+CNMI=2,2,0,0,0\r", "\r\nOK\r\n")
		// SMS-DELIVER, OA +15557654321, PID 0, DCS 0x12 (class 2, GSM7), "hi".
		pdu := "07915155000000F0" + "04" + "0B915155674523F1" + "00" + "12" + "42502141000000" + "02" + "E834"
		if err := h.sim.DeliverPDU(pdu); err != nil {
			t.Fatal(err)
		}
		h.expect("\r\n+CMTI: \"SM\",1\r\n")
	})
	t.Run("NoCSMS refuses phase 2+", func(t *testing.T) {
		h := newHost(t, Options{NoCSMS: true})
		h.cmd("AT+CSMS=1\r", "\r\nERROR\r\n")
		h.cmd("AT+CSMS=?\r", "\r\n+CSMS: (0)\r\n\r\nOK\r\n")
		h.cmd("AT+CSMS?\r", "\r\n+CSMS: 0,1,1,1\r\n\r\nOK\r\n")
	})
	t.Run("refused CNMI values", func(t *testing.T) {
		h := newHost(t, Options{CNMIModes: "(0-2),(0,1),(0),(0),(0,1)", DefaultCNMI: "1,1,0,0,0"})
		h.cmd("AT+CMEE=1\r", "\r\nOK\r\n")
		h.cmd("AT+CNMI=?\r", "\r\n+CNMI: (0-2),(0,1),(0),(0),(0,1)\r\n\r\nOK\r\n")
		h.cmd("AT+CNMI=2,2,0,0,0\r", "\r\n+CMS ERROR: 303\r\n")
		h.cmd("AT+CNMI=2,1,0,1,0\r", "\r\n+CMS ERROR: 303\r\n")
		h.cmd("AT+CNMI=2,1,0,0,0\r", "\r\nOK\r\n")
		h.cmd("AT+CNMI?\r", "\r\n+CNMI: 2,1,0,0,0\r\n\r\nOK\r\n")
	})
	t.Run("mode 0 buffers until mode 2", func(t *testing.T) {
		h := newHost(t, Options{})
		h.cmd("AT+CNMI=0,1,0,0,0\r", "\r\nOK\r\n")
		if err := h.sim.Deliver("+15557654321", "buffered"); err != nil {
			t.Fatal(err)
		}
		h.quiet(150 * time.Millisecond)
		h.cmd("AT+CNMI=2,1,0,0,0\r", "\r\nOK\r\n\r\n+CMTI: \"SM\",1\r\n")
	})
}

func TestStatusReports(t *testing.T) {
	h := newHost(t, Options{})
	enc := sms.NewEncoder(sms.AsSubmit)
	pdus, lens := submitPDUs(t, enc, "+15551234567", "report me", true)
	h.cmd(fmt.Sprintf("AT+CMGS=%d\r", lens[0]), "\r\n> ")
	h.cmd(pdus[0]+"\x1a", cmgsFrame(1))
	if err := h.sim.DeliverStatusReport(1, 0); err != nil { // ds=0: dropped
		t.Fatal(err)
	}
	h.quiet(100 * time.Millisecond)

	h.cmd("AT+CNMI=2,1,0,1,0\r", "\r\nOK\r\n")
	if err := h.sim.DeliverStatusReport(1, 0); err != nil {
		t.Fatal(err)
	}
	head, pdu := h.readURCWithPDU()
	if head != fmt.Sprintf("+CDS: %d", tpduLen(t, pdu)) {
		t.Fatalf("head %q", head)
	}
	sr := decodeMT(t, pdu)
	if sr.SmsType() != tpdu.SmsStatusReport || sr.MR != 1 || sr.ST != 0 || sr.RA.Number() != "+15551234567" {
		t.Fatalf("status report %+v", sr)
	}

	h.cmd("AT+CNMI=2,1,0,2,0\r", "\r\nOK\r\n")
	if err := h.sim.DeliverStatusReport(1, 0x46); err != nil {
		t.Fatal(err)
	}
	h.expect("\r\n+CDSI: \"SM\",1\r\n")
	if sr := decodeMT(t, h.sim.Messages()[0].PDU); sr.ST != 0x46 {
		t.Fatalf("stored status %#x", sr.ST)
	}
	if err := h.sim.DeliverStatusReport(77, 0); err == nil {
		t.Fatal("status report for an unknown MR succeeded")
	}
}

func TestPIN(t *testing.T) {
	h := newHost(t, Options{PIN: "1234", PUK: "87654321", OwnNumber: "+15550001111"})
	h.cmd("AT+CMEE=1\r", "\r\nOK\r\n")
	h.cmd("AT+CPIN?\r", "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n")
	h.cmd("AT+CMGL=4\r", "\r\n+CMS ERROR: 311\r\n")
	h.cmd("AT+CNUM\r", "\r\n+CME ERROR: 11\r\n")
	h.cmd("AT+CREG?\r", "\r\n+CREG: 0,0\r\n\r\nOK\r\n")
	if err := h.sim.Deliver("+15557654321", "x"); !errors.Is(err, ErrSIMLocked) {
		t.Fatalf("Deliver while locked: %v, want ErrSIMLocked", err)
	}
	h.cmd("AT+CPIN=\"0000\"\r", "\r\n+CME ERROR: 16\r\n")
	h.cmd("AT+CPIN=\"1234\"\r", "\r\nOK\r\n")
	h.cmd("AT+CPIN?\r", "\r\n+CPIN: READY\r\n\r\nOK\r\n")
	h.cmd("AT+CNUM\r", "\r\n+CNUM: \"\",\"+15550001111\",145\r\n\r\nOK\r\n")

	// A power cycle locks the SIM again; three wrong PINs need the PUK.
	if err := h.sim.Replug(); err != nil {
		t.Fatal(err)
	}
	h = openHost(t, h.sim)
	h.cmd("AT+CMEE=2\r", "\r\nOK\r\n")
	for i := 0; i < 3; i++ {
		h.cmd("AT+CPIN=\"9999\"\r", "\r\n+CME ERROR: incorrect password\r\n")
	}
	h.cmd("AT+CPIN?\r", "\r\n+CPIN: SIM PUK\r\n\r\nOK\r\n")
	h.cmd("AT+CPIN=\"1234\"\r", "\r\n+CME ERROR: SIM PUK required\r\n")
	h.cmd("AT+CMGR=1\r", "\r\n+CMS ERROR: SIM PUK required\r\n")
	h.cmd("AT+CPIN=\"11111111\",\"4321\"\r", "\r\n+CME ERROR: incorrect password\r\n")
	h.cmd("AT+CPIN=\"87654321\",\"4321\"\r", "\r\nOK\r\n")
	h.cmd("AT+CPIN?\r", "\r\n+CPIN: READY\r\n\r\nOK\r\n")
}

func TestCNUM(t *testing.T) {
	tests := []struct {
		name, number, want string
	}{
		{"international", "+15550001111", "\r\n+CNUM: \"\",\"+15550001111\",145\r\n\r\nOK\r\n"},
		{"national", "5550001111", "\r\n+CNUM: \"\",\"5550001111\",129\r\n\r\nOK\r\n"},
		{"unknown", "", "\r\nOK\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, Options{OwnNumber: tc.number})
			h.cmd("AT+CNUM\r", tc.want)
		})
	}
}

func TestHang(t *testing.T) {
	h := newHost(t, Options{})
	h.sim.Hang(true)
	h.send("AT+CSQ\r")
	h.quiet(300 * time.Millisecond)
	if err := h.sim.Deliver("+15557654321", "held"); err != nil {
		t.Fatal(err)
	}
	h.quiet(100 * time.Millisecond)
	cmds := h.sim.Commands()
	if len(cmds) == 0 || cmds[len(cmds)-1] != "AT+CSQ" {
		t.Fatalf("Commands() = %q, want AT+CSQ logged", cmds)
	}
	h.sim.Hang(false)
	h.expect("\r\n+CMTI: \"SM\",1\r\n") // held URC comes out when the modem recovers
	h.cmd("AT\r", "\r\nOK\r\n")
}

func TestDelay(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
		cmd    string
		want   string
		delay  time.Duration
	}{
		{"delayed", "+CSQ", "AT+CSQ\r", "\r\n+CSQ: 20,99\r\n\r\nOK\r\n", 300 * time.Millisecond},
		{"prefix with AT and lower case", "at+cpms?", "AT+CPMS?\r", "\r\n+CPMS: \"SM\",0,30,\"SM\",0,30,\"SM\",0,30\r\n\r\nOK\r\n", 300 * time.Millisecond},
		{"other command not delayed", "+CSQ", "AT\r", "\r\nOK\r\n", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, Options{})
			h.sim.SetDelay(tc.prefix, 300*time.Millisecond)
			start := time.Now()
			h.cmd(tc.cmd, tc.want)
			el := time.Since(start)
			if el < tc.delay || (tc.delay == 0 && el > 250*time.Millisecond) {
				t.Fatalf("answered after %v, want delay %v", el, tc.delay)
			}
		})
	}
	t.Run("CMGS delay after the PDU", func(t *testing.T) {
		h := newHost(t, Options{})
		h.sim.SetDelay("+CMGS", 300*time.Millisecond)
		pdus, lens := submitPDUs(t, sms.NewEncoder(sms.AsSubmit), "+15551234567", "slow", false)
		start := time.Now()
		h.cmd(fmt.Sprintf("AT+CMGS=%d\r", lens[0]), "\r\n> ")
		if el := time.Since(start); el > 250*time.Millisecond {
			t.Fatalf("prompt after %v, want it at once", el)
		}
		h.send(pdus[0] + "\x1a")
		// The message is sent before the late answer arrives.
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		if _, err := h.sim.WaitSent(ctx, 1); err != nil {
			t.Fatal(err)
		}
		h.expect(cmgsFrame(1))
		if el := time.Since(start); el < 300*time.Millisecond {
			t.Fatalf("answered after %v", el)
		}
	})
}

func TestUnplugReplug(t *testing.T) {
	h := newHost(t, Options{Echo: true})
	link := filepath.Join(t.TempDir(), "ttyMODEM")
	if err := h.sim.Link(link); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(link); err != nil || target != h.sim.Path() {
		t.Fatalf("link -> %q, %v; want %q", target, err, h.sim.Path())
	}
	h.cmd("ATE0\r", "ATE0\r\r\nOK\r\n")
	if err := h.sim.StoreOnly("+15557654321", "survives"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := h.port.Read(buf)
			if err != nil {
				done <- err
				return
			}
			if n == 0 {
				continue // read timeout
			}
		}
	}()
	h.sim.Unplug()
	select {
	case err := <-done:
		t.Logf("host read error after unplug: %v", err)
	case <-time.After(ioTimeout):
		t.Fatal("host read did not fail after Unplug")
	}
	if _, err := h.port.Write([]byte("AT\r")); err == nil {
		t.Log("write after unplug did not fail (kernel accepted it)")
	}
	if err := h.sim.Deliver("+15557654321", "x"); !errors.Is(err, ErrUnplugged) {
		t.Fatalf("Deliver while unplugged: %v, want ErrUnplugged", err)
	}
	if err := h.sim.Replug(); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(link); err != nil || target != h.sim.Path() {
		t.Fatalf("link -> %q, %v; want %q", target, err, h.sim.Path())
	}
	h2 := openHost(t, h.sim)
	h2.cmd("AT\r", "AT\r\r\nOK\r\n") // echo back on: settings reset by the power cycle
	if h.sim.Stored() != 1 {
		t.Fatalf("Stored() = %d after replug, want 1", h.sim.Stored())
	}
	// The host can close and reopen the port without losing the modem.
	h2.port.Close()
	h3 := openHost(t, h.sim)
	h3.cmd("AT\r", "AT\r\r\nOK\r\n")
	if err := h.sim.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(link); !os.IsNotExist(err) {
		t.Fatalf("link still exists after Close: %v", err)
	}
}

func TestStartOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"bad CNMI modes", Options{CNMIModes: "(0-2),(0-3)"}},
		{"default CNMI not accepted", Options{CNMIModes: "(0-2),(0,1),(0),(0),(0)", DefaultCNMI: "2,2,0,0,0"}},
		{"storage too large", Options{StorageSize: 1000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := Start(tc.opts); err == nil {
				s.Close()
				t.Fatal("Start succeeded")
			}
		})
	}
}

func TestDeliverPDURejectsGarbage(t *testing.T) {
	sim := startSim(t, Options{})
	tests := []struct{ name, pdu string }{
		{"not hex", "zz"},
		{"only SMSC", "00"},
		{"submit", "0001000B915155214365F7000001E8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := sim.DeliverPDU(tc.pdu); err == nil {
				t.Fatal("DeliverPDU succeeded")
			}
		})
	}
}

func TestSplitCommands(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		ok   bool
	}{
		{"", nil, true},
		{"E0V1", []string{"E0", "V1"}, true},
		{"+CMGF=0;+CMEE=1", []string{"+CMGF=0", "+CMEE=1"}, true},
		{"E0+CMEE=2;&FS0=1", []string{"E0", "+CMEE=2", "&F", "S0=1"}, true},
		{`+CPIN="12; 34"`, []string{`+CPIN="12; 34"`}, true},
		{"+CMGS = 23", []string{"+CMGS=23"}, true},
		{"!", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := splitCommands(tc.in)
			if ok != tc.ok || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("splitCommands(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestUnpluggedPathStaysGone: while a simulator lives, the /dev/pts path of
// a pty it unplugged is never handed to another pty. A host that keeps
// retrying the old path (a line waiting for its device, in this process or
// in a bubbled under test beside it) must find nothing there, not another
// simulator's modem, whose bytes it would then steal.
func TestUnpluggedPathStaysGone(t *testing.T) {
	sim := startSim(t, Options{})
	old := sim.Path()
	sim.Unplug()
	if _, err := os.Stat(old); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat %s after Unplug: %v, want it gone like an unplugged USB device", old, err)
	}
	for i := 0; i < 3; i++ {
		other := startSim(t, Options{})
		if other.Path() == old {
			t.Fatalf("a new simulator was given %s, the path of an unplugged one", old)
		}
	}
	if err := sim.Replug(); err != nil {
		t.Fatal(err)
	}
	if sim.Path() == old {
		t.Fatalf("Replug reused %s", old)
	}
	if _, err := os.Stat(old); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat %s after Replug: %v, want it still gone", old, err)
	}
}

// TestSMSToOwnNumberComesBack: the network delivers an SMS the host sends to
// the SIM's own number (Subscriber, else OwnNumber) back to the SIM, from
// that number; SMS to other numbers do not come back.
func TestSMSToOwnNumberComesBack(t *testing.T) {
	tests := []struct {
		name       string
		opts       Options
		to         string
		wantStored int
	}{
		{"to OwnNumber", Options{OwnNumber: "+15550001111"}, "+15550001111", 1},
		{"to Subscriber while +CNUM knows nothing", Options{Subscriber: "+15550002222"}, "+15550002222", 1},
		{"to another number", Options{OwnNumber: "+15550001111"}, "+15557654321", 0},
		{"to +CNUM when Subscriber differs", Options{OwnNumber: "+15550001111", Subscriber: "+15550002222"}, "+15550001111", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, tc.opts)
			h.cmd("AT+CMEE=1\r", "\r\nOK\r\n")
			enc := sms.NewEncoder(sms.AsSubmit)
			pdus, lens := submitPDUs(t, enc, tc.to, "line check 123456", false)
			h.cmd(fmt.Sprintf("AT+CMGS=%d\r", lens[0]), "\r\n> ")
			h.cmd(pdus[0]+"\x1a", cmgsFrame(1))
			if tc.wantStored == 0 {
				h.quiet(300 * time.Millisecond)
				if n := h.sim.Stored(); n != 0 {
					t.Fatalf("stored %d messages, want none", n)
				}
				return
			}
			h.expect("\r\n+CMTI: \"SM\",1\r\n")
			msgs := h.sim.Messages()
			if len(msgs) != 1 {
				t.Fatalf("stored %d messages, want 1", len(msgs))
			}
			d := decodeMT(t, msgs[0].PDU)
			text, err := sms.Decode([]*tpdu.TPDU{d})
			if err != nil {
				t.Fatal(err)
			}
			if d.OA.Number() != tc.to || string(text) != "line check 123456" {
				t.Errorf("came back from %q with %q, want from %q", d.OA.Number(), text, tc.to)
			}
		})
	}
}
