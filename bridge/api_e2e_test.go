package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/bubbled/bubbled/bridge/dendritetest"
	"github.com/bubbled/bubbled/connectors/api"
	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// apiEnv is an env with the send API on a free loopback port.
type apiEnv struct {
	*env
	url    string
	tokens map[string]string // name -> generated secret; "webhook <url>" -> its secret
}

// newAPIEnv starts bubbled with two API tokens: alerts may text the
// contact from the line (and from the lines of o.more); other may text
// anyone from a line that is not this one (the second user's).
func newAPIEnv(t *testing.T, o envOptions) *apiEnv {
	t.Helper()
	port, err := dendritetest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	lines := `"` + lineNumber + `"`
	for i := 2; i < 2+o.more; i++ {
		lines += fmt.Sprintf(`, "+1555000300%d"`, i)
	}
	extra := o.top // more keys of the api section, 2 spaces deep
	o.top = fmt.Sprintf(`api:
  listen: 127.0.0.1:%d
  tokens:
    - name: alerts
      token: generate
      lines: [%s]
      recipients: ["%s", "+1555765*"]
    - name: other
      token: generate
      lines: ["+15550009999"]
      recipients: ["*"]
%s
`, port, lines, contactNumber, extra)
	if o.sim.OwnNumber == "" {
		o.sim = modemsim.Options{OwnNumber: lineNumber, Echo: true}
	}
	e := newEnvWith(t, o)
	raw, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		API struct {
			Tokens   []struct{ Name, Token string } `yaml:"tokens"`
			Webhooks []struct{ URL, Secret string } `yaml:"webhooks"`
		} `yaml:"api"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	a := &apiEnv{env: e, url: fmt.Sprintf("http://127.0.0.1:%d", port), tokens: map[string]string{}}
	for _, tok := range cfg.API.Tokens {
		if len(tok.Token) < 32 {
			t.Fatalf("token %s was not generated into the config: %q", tok.Name, tok.Token)
		}
		a.tokens[tok.Name] = tok.Token
	}
	for _, h := range cfg.API.Webhooks {
		a.tokens["webhook "+h.URL] = h.Secret
	}
	return a
}

// call makes one API request as token (a name of a.tokens, or "" for none).
func (a *apiEnv) call(method, path, token string, body any) (int, map[string]any) {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, a.url+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+a.tokens[token])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v; log:\n%s", method, path, err, a.tail())
	}
	defer resp.Body.Close()
	out := map[string]any{}
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// waitStatus polls the message's status as token until it is want.
func (a *apiEnv) waitStatus(id, token, want string) map[string]any {
	a.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, out := a.call(http.MethodGet, "/api/v1/messages/"+id, token, nil)
		if code == 200 && out["status"] == want {
			return out
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("message %s: %d %v, want status %s; log:\n%s", id, code, out, want, a.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestSendAPI(t *testing.T) {
	a := newAPIEnv(t, envOptions{})
	alice := a.newUser("alice")
	a.login(alice)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	// Outsiders get 401 and nothing is sent.
	if code, _ := a.call(http.MethodPost, "/api/v1/messages", "", map[string]string{"to": contactNumber, "text": "x"}); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", code)
	}
	if code, out := a.call(http.MethodPost, "/api/v1/messages", "alerts", map[string]string{"to": "+15551230000", "text": "x"}); code != http.StatusForbidden {
		t.Fatalf("recipient not allowed: %d %v, want 403", code, out)
	}

	// A message through the API leaves as an SMS the modem decodes...
	code, out := a.call(http.MethodPost, "/api/v1/messages", "alerts", map[string]string{"to": contactNumber, "text": "Disk full on db-1", "idempotency_key": "disk-1"})
	if code != http.StatusAccepted {
		t.Fatalf("POST = %d %v, want 202; log:\n%s", code, out, a.tail())
	}
	id := out["id"].(string)
	sent, err := a.sim.WaitSent(ctx, 1)
	if err != nil {
		t.Fatalf("the modem saw no SMS: %v; log:\n%s", err, a.tail())
	}
	if sent[0].To != contactNumber || sent[0].Text != "Disk full on db-1" || !sent[0].StatusReport {
		t.Errorf("modem got %+v", sent[0])
	}
	// ...and shows in the contact's room, marked with the token's name.
	_, room := alice.waitMessage(60*time.Second, botMXID, func(b string) bool { return b == "API token alerts: Disk full on db-1" })
	if rooms := alice.roomsWith(ghostMXID(contactNumber)); len(rooms) != 1 || rooms[0] != room {
		t.Errorf("the API message is in %s, want the contact's only portal %v", room, rooms)
	}
	a.waitStatus(id, "alerts", "sent")
	if err := a.sim.DeliverStatusReport(sent[0].MRs[0], 0); err != nil {
		t.Fatal(err)
	}
	a.waitStatus(id, "alerts", "delivered")

	// A retry with the same key is the same message; another token does not
	// see it.
	if code, out := a.call(http.MethodPost, "/api/v1/messages", "alerts", map[string]string{"to": contactNumber, "text": "Disk full on db-1", "idempotency_key": "disk-1"}); code != 200 || out["id"] != id {
		t.Errorf("retry = %d %v, want 200 with %s", code, out, id)
	}
	if code, _ := a.call(http.MethodGet, "/api/v1/messages/"+id, "other", nil); code != http.StatusNotFound {
		t.Errorf("another token's GET = %d, want 404", code)
	}

	// The other token may not use alice's line; its own line is not logged
	// in, so its message waits and says why, and nothing leaves alice's modem.
	if code, out := a.call(http.MethodPost, "/api/v1/messages", "other", map[string]string{"to": contactNumber, "text": "x", "line": lineNumber}); code != http.StatusForbidden {
		t.Errorf("other token on alice's line = %d %v, want 403", code, out)
	}
	code, out = a.call(http.MethodPost, "/api/v1/messages", "other", map[string]string{"to": contactNumber, "text": "from a line that is away"})
	if code != http.StatusAccepted {
		t.Fatalf("other token = %d %v", code, out)
	}
	otherID := out["id"].(string)

	// Alertmanager: firing, then resolved, become two readable SMS.
	firing, err := os.ReadFile("../connectors/api/testdata/alertmanager_firing.json")
	if err != nil {
		t.Fatal(err)
	}
	resolved, err := os.ReadFile("../connectors/api/testdata/alertmanager_resolved.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{string(firing), string(resolved)} {
		if code, out := a.call(http.MethodPost, "/api/v1/alertmanager?to="+contactNumber, "alerts", body); code != http.StatusAccepted {
			t.Fatalf("alertmanager = %d %v", code, out)
		}
	}
	sent, err = a.sim.WaitSent(ctx, 3)
	if err != nil {
		t.Fatalf("the modem got %d SMS: %v; log:\n%s", len(a.sim.Sent()), err, a.tail())
	}
	// The API's workers route in parallel: the two may leave in either order.
	if strings.HasPrefix(sent[1].Text, "[RESOLVED") {
		sent[1], sent[2] = sent[2], sent[1]
	}
	if !strings.HasPrefix(sent[1].Text, "[FIRING:2] DiskFull\nseverity=critical\n- db-1:9100: Disk /var is 97% full") ||
		!strings.HasPrefix(sent[2].Text, "[RESOLVED:2] DiskFull") {
		t.Errorf("alert SMS:\n%s\n---\n%s", sent[1].Text, sent[2].Text)
	}
	if len(a.sim.Sent()) != 3 {
		t.Errorf("the modem got %d SMS, want 3 (the repeated key and the other token's line send nothing)", len(a.sim.Sent()))
	}
	if code, st := a.call(http.MethodGet, "/api/v1/messages/"+otherID, "other", nil); code != 200 || st["status"] != "queued" ||
		!strings.Contains(fmt.Sprint(st["reason"]), "+15550009999 is not logged in") {
		t.Errorf("the other token's message: %d %v, want queued, waiting for its line", code, st)
	}
}

// TestSendAPICrashAfterAccepted kills bubbled (SIGKILL) right after the
// API answered 202 for a burst of messages, while the modem is unplugged
// (so no part is on the wire: the outbox's own crash window, a part the
// modem took but bubbled did not record, is another test's business).
// After the restart each message goes out once and shows in the room once.
func TestSendAPICrashAfterAccepted(t *testing.T) {
	a := newAPIEnv(t, envOptions{link: true})
	alice := a.newUser("alice")
	a.login(alice)
	a.sim.Unplug()
	const n = 6
	ids := make([]string, n)
	for i := range n {
		code, out := a.call(http.MethodPost, "/api/v1/messages", "alerts", map[string]string{"to": contactNumber, "text": fmt.Sprintf("crash test %d", i)})
		if code != http.StatusAccepted {
			t.Fatalf("POST %d = %d %v", i, code, out)
		}
		ids[i] = out["id"].(string)
	}
	_ = a.proc.Process.Kill()
	<-a.procDone
	a.proc = nil
	if err := a.sim.Replug(); err != nil {
		t.Fatal(err)
	}
	a.startBubbled()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	sent, err := a.sim.WaitSent(ctx, n)
	if err != nil {
		t.Fatalf("after the restart the modem got %d of %d SMS: %v; log:\n%s", len(a.sim.Sent()), n, err, a.tail())
	}
	for i := range n {
		want := fmt.Sprintf("crash test %d", i)
		got := 0
		for _, s := range sent {
			if s.Text == want {
				got++
			}
		}
		if got != 1 {
			t.Errorf("%q went out %d times, want once", want, got)
		}
		alice.waitMessage(60*time.Second, botMXID, func(b string) bool { return b == "API token alerts: "+want })
		a.waitStatus(ids[i], "alerts", "sent")
	}
	time.Sleep(2 * time.Second)
	if got := len(a.sim.Sent()); got != n {
		t.Errorf("the modem got %d SMS, want %d", got, n)
	}
	for i := range n {
		if c := alice.count(botMXID, fmt.Sprintf("API token alerts: crash test %d", i)); c != 1 {
			t.Errorf("message %d shows %d times in Matrix, want once", i, c)
		}
	}
}

// TestWebhookOnReceivedSMS: a received SMS is posted, signed, to the
// line's webhook; a receiver that is down gets it after bubbled restarts.
func TestWebhookOnReceivedSMS(t *testing.T) {
	var mu sync.Mutex
	var got []api.Received
	var bad []string
	down := true
	var secret string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := api.VerifySignature(secret, r.Header.Get(api.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			bad = append(bad, err.Error())
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if down {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		var rc api.Received
		_ = json.Unmarshal(body, &rc)
		got = append(got, rc)
	}))
	defer recv.Close()
	a := newAPIEnv(t, envOptions{top: fmt.Sprintf("  webhooks:\n    - url: %s/hook\n      secret: generate\n      lines: [\"%s\"]\n", recv.URL, lineNumber)})
	mu.Lock()
	secret = a.tokens["webhook "+recv.URL+"/hook"]
	mu.Unlock()
	if len(secret) < 32 {
		t.Fatalf("the webhook secret was not generated into the config: %q", secret)
	}
	alice := a.newUser("alice")
	a.login(alice)
	if err := a.sim.Deliver(contactNumber, "garage door open"); err != nil {
		t.Fatal(err)
	}
	alice.waitMessage(60*time.Second, ghostMXID(contactNumber), func(b string) bool { return b == "garage door open" })
	a.stopBubbled()
	mu.Lock()
	down = false
	mu.Unlock()
	a.startBubbled()
	deadline := time.Now().Add(90 * time.Second)
	for {
		mu.Lock()
		n, nbad := len(got), len(bad)
		mu.Unlock()
		if n > 0 || nbad > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook got nothing after the restart; log:\n%s", a.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 || len(got) != 1 || got[0].Text != "garage door open" || got[0].From != contactNumber || got[0].Line != lineNumber {
		t.Errorf("webhook got %+v, refused %v", got, bad)
	}
}
