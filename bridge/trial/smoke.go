package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// Timeouts of the smoke test's two legs.
const (
	inboundTimeout  = 60 * time.Second
	outboundTimeout = 60 * time.Second
)

// SmokeResult is what the smoke test measured.
type SmokeResult struct {
	// Portal is the room where the SMS arrived.
	Portal id.RoomID
	// Encrypted says the message arrived end-to-end encrypted (and was decrypted).
	Encrypted bool
	// Inbound is the time from posting the SMS to the control API until the trial user's
	// client had the decrypted message.
	Inbound time.Duration
	// Outbound is the time from sending the reply in Matrix until the simulated network had
	// the complete SMS.
	Outbound time.Duration
}

// smoke texts the bridge from the simulated phone through the control API, waits until the
// trial user's client has decrypted the message in the contact's portal, replies there, and
// waits until the simulated network got the reply as an SMS to the phone (read through the
// control API's /sent).
func smoke(ctx context.Context, u *matrixUser, controlURL string, management id.RoomID, say func(string, ...any)) (*SmokeResult, error) {
	nonce := time.Now().Format("15:04:05.000")
	text := "Hello from the phone (smoke test " + nonce + ")"
	reply := "Reply from Matrix ✓ (smoke test " + nonce + ")"
	ghost := id.UserID(ghostMXID(phoneNumber))
	res := &SmokeResult{}

	say("Smoke test: the phone %s texts the line %s: %q", phoneNumber, lineNumber, text)
	after := u.mark()
	start := time.Now()
	if err := postSMS(ctx, controlURL, phoneNumber, text); err != nil {
		return nil, err
	}
	m, err := u.waitMessage(ctx, inboundTimeout, after, func(m seenMessage) bool {
		return m.sender == ghost && m.room != management && m.body == text
	})
	if err != nil {
		return nil, fmt.Errorf("wait for the SMS in the trial user's portal with %s: %w; the user's client saw:%s", ghost, err, u.messagesAfter(after, ""))
	}
	res.Inbound, res.Portal, res.Encrypted = time.Since(start), m.room, m.decrypted
	if !res.Encrypted {
		return nil, fmt.Errorf("the SMS arrived in %s unencrypted; the trial's config turns encryption on", m.room)
	}
	say("  arrived in portal %s from %s, end-to-end encrypted, after %s", m.room, ghost, res.Inbound.Round(time.Millisecond))

	say("Smoke test: the trial user replies in the portal: %q", reply)
	start = time.Now()
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	_, err = u.cli.SendText(rctx, m.room, reply)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("send the reply in the portal: %w", err)
	}
	sent, err := waitSent(ctx, controlURL, outboundTimeout, func(s modemsim.Sent) bool {
		return s.To == phoneNumber && s.Text == reply
	})
	if err != nil {
		return nil, err
	}
	res.Outbound = time.Since(start)
	say("  the simulated network got an SMS to %s in %d part(s) after %s", sent.To, sent.Parts, res.Outbound.Round(time.Millisecond))
	return res, nil
}

// postSMS makes the simulated phone text the line: POST /sms?from=<from> with the text.
func postSMS(ctx context.Context, controlURL, from, text string) error {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, controlURL+"/sms?from="+url.QueryEscape(from), strings.NewReader(text))
	if err != nil {
		return fmt.Errorf("text the bridge: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("text the bridge through the control API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("text the bridge through the control API: %s: %s", resp.Status, readSmall(resp))
	}
	return nil
}

// waitSent polls GET /sent until a message that match accepts is listed.
func waitSent(ctx context.Context, controlURL string, timeout time.Duration, match func(modemsim.Sent) bool) (modemsim.Sent, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(logPoll)
	defer tick.Stop()
	var last []modemsim.Sent
	for {
		sent, err := getSent(ctx, controlURL)
		if err != nil {
			return modemsim.Sent{}, err
		}
		last = sent
		for _, s := range sent {
			if match(s) {
				return s, nil
			}
		}
		select {
		case <-ctx.Done():
			return modemsim.Sent{}, ctx.Err()
		case <-deadline.C:
			return modemsim.Sent{}, fmt.Errorf("the simulated network got no matching SMS within %s; /sent lists %d message(s): %+v", timeout, len(last), last)
		case <-tick.C:
		}
	}
}

// getSent reads GET /sent.
func getSent(ctx context.Context, controlURL string) ([]modemsim.Sent, error) {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, controlURL+"/sent", nil)
	if err != nil {
		return nil, fmt.Errorf("read /sent: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read /sent from the control API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read /sent from the control API: %s: %s", resp.Status, readSmall(resp))
	}
	var sent []modemsim.Sent
	if err := json.NewDecoder(resp.Body).Decode(&sent); err != nil {
		return nil, fmt.Errorf("decode /sent: %w", err)
	}
	return sent, nil
}

// readSmall returns up to 4 KiB of a response body.
func readSmall(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return strings.TrimSpace(string(b))
}
