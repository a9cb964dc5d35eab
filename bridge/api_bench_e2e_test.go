package bridge_test

// Throughput of the send API through the real daemon (issue 12, item 5):
//
//	go test -tags goolm -run '^$' -bench 'API' -benchtime 1x ./bridge/
//
// Each benchmark starts modemsim, Dendrite and bubbled once, logs the lines
// in, and posts from the test process with 8 concurrent HTTP clients, as
// automation would. The figures are the daemon's: from the first POST
// until the simulator decoded the last SMS-SUBMIT from the pty. Every
// message is also posted into the contact's Matrix room (and decrypted by
// the test's client), concurrently: that load is part of the run.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// apiBurst is N of the zero-latency figure.
const apiBurst = 500

// benchPost posts one message without a *testing.T (the benchmark's
// goroutines may call it).
func benchPost(a *apiEnv, body map[string]string) error {
	raw, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, a.url+"/api/v1/messages", bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.tokens["alerts"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST %v: %s", body, resp.Status)
	}
	return nil
}

// postAll posts bodies with 8 concurrent clients and returns the first error.
func postAll(a *apiEnv, bodies []map[string]string) error {
	work := make(chan map[string]string)
	errs := make(chan error, len(bodies))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range work {
				if err := benchPost(a, body); err != nil {
					errs <- err
				}
			}
		}()
	}
	for _, b := range bodies {
		work <- b
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs
}

// BenchmarkAPIToPDU posts apiBurst single-part messages to one contact and
// waits until the zero-latency simulator has them all. sms/s is the
// sustained rate (target ≥ 45); ms-intake is how long the API took to
// answer all 202s; cpu-ms/msg is bubbled's CPU time per message over the
// run (including the Matrix posts).
func BenchmarkAPIToPDU(b *testing.B) {
	a := benchSetup(b, func(t *testing.T) *apiEnv {
		a := newAPIEnv(t, envOptions{})
		alice := a.newUser("alice")
		a.login(alice)
		return a
	})
	for b.Loop() {
		n0 := len(a.sim.Sent())
		bodies := make([]map[string]string, apiBurst)
		for i := range bodies {
			bodies[i] = map[string]string{"to": contactNumber, "text": fmt.Sprintf("API burst %d.%d", n0, i)}
		}
		cpu0 := benchCPU(b, a.env)
		start := time.Now()
		if err := postAll(a, bodies); err != nil {
			b.Fatalf("%v; log:\n%s", err, a.tail())
		}
		intake := time.Since(start)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		sent, err := a.sim.WaitSent(ctx, n0+apiBurst)
		elapsed := time.Since(start)
		cancel()
		if err != nil {
			b.Fatalf("the modem got %d of %d: %v; log:\n%s", len(a.sim.Sent())-n0, apiBurst, err, a.tail())
		}
		cpu := benchCPU(b, a.env) - cpu0
		seen := map[string]bool{}
		for _, s := range sent[n0:] {
			if seen[s.Text] || !strings.HasPrefix(s.Text, fmt.Sprintf("API burst %d.", n0)) {
				b.Fatalf("the modem got %q twice or unasked", s.Text)
			}
			seen[s.Text] = true
		}
		b.ReportMetric(float64(apiBurst)/elapsed.Seconds(), "sms/s")
		b.ReportMetric(float64(intake)/float64(time.Millisecond), "ms-intake")
		b.ReportMetric(float64(cpu)/float64(time.Millisecond)/apiBurst, "cpu-ms/msg")
	}
}

// linePerMsg is how many messages each line sends in BenchmarkAPIEightLines.
const linePerMsg = 20

// BenchmarkAPIEightLines logs 8 modems in as 8 lines, makes each simulator
// answer AT+CMGS after 2 s, and posts linePerMsg messages per line. sms/s
// is what the modems sent over the span from the first AT+CMGS to the
// last answer (seen by the simulators); %ideal is that against 8 × 0.5
// SMS/s (target ≥ 95); ms-gap is the mean time a line takes from a modem's
// answer to its next AT+CMGS (the daemon's share of each 2 s turn).
func BenchmarkAPIEightLines(b *testing.B) {
	type fixture struct {
		a    *apiEnv
		sims []*modemsim.Sim
		nums []string
	}
	f := benchSetup(b, func(t *testing.T) fixture {
		a := newAPIEnv(t, envOptions{more: 7})
		alice := a.newUser("alice")
		loginAll(t, a, alice)
		sims := append([]*modemsim.Sim{a.sim}, a.more...)
		nums := []string{lineNumber}
		for i := 2; i < 9; i++ {
			nums = append(nums, fmt.Sprintf("+1555000300%d", i))
		}
		// One message per line first, so that each line's room with the
		// contact exists: making 8 rooms on Dendrite takes seconds, and
		// belongs to the first message of a conversation, not to the
		// lines' throughput.
		var warm []map[string]string
		for i, num := range nums {
			warm = append(warm, map[string]string{"to": contactNumber, "line": num, "text": fmt.Sprintf("line %d warm-up", i)})
		}
		if err := postAll(a, warm); err != nil {
			t.Fatalf("%v; log:\n%s", err, a.tail())
		}
		for i, s := range sims {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			_, err := s.WaitSent(ctx, 1)
			cancel()
			if err != nil {
				t.Fatalf("line %d sent no warm-up SMS: %v; log:\n%s", i, err, a.tail())
			}
		}
		for _, s := range sims {
			s.SetDelay("+CMGS", 2*time.Second)
		}
		return fixture{a, sims, nums}
	})
	for b.Loop() {
		logs0 := make([]int, len(f.sims))
		for i, s := range f.sims {
			logs0[i] = len(s.SendLog())
		}
		var bodies []map[string]string
		for k := range linePerMsg {
			for i, num := range f.nums {
				bodies = append(bodies, map[string]string{"to": contactNumber, "line": num, "text": fmt.Sprintf("line %d message %d", i, k)})
			}
		}
		if err := postAll(f.a, bodies); err != nil {
			b.Fatalf("%v; log:\n%s", err, f.a.tail())
		}
		var first, last time.Time
		var gap time.Duration // between a modem's answer and the line's next AT+CMGS
		gaps := 0
		for i, s := range f.sims {
			deadline := time.Now().Add(5 * time.Minute)
			for len(s.SendLog())-logs0[i] < linePerMsg || s.SendLog()[len(s.SendLog())-1].Answered.IsZero() {
				if time.Now().After(deadline) {
					b.Fatalf("line %d sent %d of %d; log:\n%s", i, len(s.SendLog())-logs0[i], linePerMsg, f.a.tail())
				}
				time.Sleep(100 * time.Millisecond)
			}
			log := s.SendLog()[logs0[i]:]
			for j := 1; j < len(log); j++ {
				gap += log[j].Prompted.Sub(log[j-1].Answered)
				gaps++
			}
			if first.IsZero() || log[0].Prompted.Before(first) {
				first = log[0].Prompted
			}
			if end := log[len(log)-1].Answered; end.After(last) {
				last = end
			}
		}
		rate := float64(linePerMsg*len(f.sims)) / last.Sub(first).Seconds()
		b.ReportMetric(rate, "sms/s")
		b.ReportMetric(100*rate/(0.5*float64(len(f.sims))), "%ideal")
		b.ReportMetric(float64(gap)/float64(time.Millisecond)/float64(max(gaps, 1)), "ms-gap")
	}
}

// loginAll logs every configured modem in as a line of u, picking each
// from the bot's list (the last one is taken without asking).
func loginAll(t *testing.T, a *apiEnv, u *user) {
	t.Helper()
	ctx := context.Background()
	resp, err := u.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{botMXID}, IsDirect: true, Preset: "trusted_private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	mgmt := resp.RoomID
	u.waitJoined(mgmt, botMXID)
	ids := []string{"sim0"}
	for i := 2; i < 2+len(a.more); i++ {
		ids = append(ids, fmt.Sprintf("sim%d", i))
	}
	for i, modem := range ids {
		number := lineNumber
		if i > 0 {
			number = fmt.Sprintf("+1555000300%d", i+1)
		}
		loggedIn := func(b string) bool {
			return strings.Contains(b, "Logged in") && strings.Contains(b, number[len(number)-4:])
		}
		if i == len(ids)-1 {
			u.command(mgmt, "login modem", 60*time.Second, loggedIn)
			continue
		}
		before := u.botMessages(mgmt)
		if _, err := u.cli.SendText(ctx, mgmt, "login modem"); err != nil {
			t.Fatal(err)
		}
		u.waitFor("the bot's list of modems", 60*time.Second, func() bool {
			for _, evt := range u.messages[mgmt][min(before, len(u.messages[mgmt])):] {
				if strings.Contains(evt.Content.AsMessage().Body, "Options:") {
					return true
				}
			}
			return false
		})
		u.command(mgmt, modem, 60*time.Second, loggedIn)
	}
}

// botMessages counts the messages in room so far.
func (u *user) botMessages(room id.RoomID) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.messages[room])
}
