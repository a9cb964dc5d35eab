package bridge_test

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// scrape GETs path on bubbled's metrics listener.
func (e *env) scrape(t *testing.T, method, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.metricsURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metricValue returns the value of the sample whose name and labels start
// with series in /metrics, or -1 when absent.
func (e *env) metricValue(t *testing.T, series string) float64 {
	t.Helper()
	_, body := e.scrape(t, "GET", "/metrics")
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + `[^ ]* ([-0-9.e+]+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// waitReady polls /readyz until its status is want and its body holds
// every one of bodyHas.
func (e *env) waitReady(t *testing.T, want int, bodyHas ...string) string {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var code int
	var body string
	for time.Now().Before(deadline) {
		code, body = e.scrape(t, "GET", "/readyz")
		ok := code == want
		for _, s := range bodyHas {
			ok = ok && strings.Contains(body, s)
		}
		if ok {
			return body
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("/readyz stayed %d %s; want %d with %q; log:\n%s", code, body, want, bodyHas, e.tail())
	return ""
}

// TestMetricsAndReadiness: /metrics moves as an SMS comes in and a reply
// goes out through Dendrite and modemsim; /readyz turns unready (503, naming
// the line) when the modem is unplugged and ready again when it is back; the
// listener takes only GET.
func TestMetricsAndReadiness(t *testing.T) {
	e := newEnvWith(t, envOptions{sim: modemsim.Options{OwnNumber: lineNumber, Echo: true}, link: true})
	defer func() {
		if t.Failed() {
			t.Log(e.tail())
		}
	}()
	if code, body := e.scrape(t, "GET", "/healthz"); code != 200 || !strings.Contains(body, "alive") {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	if code, _ := e.scrape(t, "POST", "/readyz"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz = %d, want 405", code)
	}
	alice := e.newUser("alice")
	e.login(alice)
	e.waitReady(t, 200, `"ready":true`, `"sim0":"ready"`)

	inbound := `bubbled_messages_total{direction="in",result="bridged",route="sms"}`
	if v := e.metricValue(t, inbound); v > 0 {
		t.Fatalf("%s = %v before any SMS", inbound, v)
	}
	if err := e.sim.Deliver(contactNumber, "metrics please"); err != nil {
		t.Fatal(err)
	}
	_, room := alice.waitMessage(60*time.Second, ghostMXID(contactNumber), func(b string) bool { return b == "metrics please" })
	metricsEventually(t, inbound+" counts the SMS", func() bool { return e.metricValue(t, inbound) == 1 })
	if _, err := alice.cli.SendText(context.Background(), room, "here you are"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := e.sim.WaitSent(ctx, 1); err != nil {
		t.Fatalf("the modem got no SMS: %v", err)
	}
	for _, series := range []string{
		`bubbled_messages_total{direction="out",result="accepted",route="sms"}`,
		`bubbled_messages_total{direction="out",result="sent",route="sms"}`,
		`bubbled_sms_parts_total{direction="out",line="sim0"}`,
		`bubbled_send_latency_seconds_count{route="sms"}`,
	} {
		metricsEventually(t, series+" counts the reply", func() bool { return e.metricValue(t, series) == 1 })
	}
	for series, want := range map[string]float64{
		`bubbled_queue_depth{line="sim0"}`:              0,
		`bubbled_queue_oldest_age_seconds{line="sim0"}`: 0,
		`bubbled_line_ready{line="sim0",state="ready"}`: 1,
		`bubbled_modem_registered{line="sim0"}`:         1,
		`bubbled_directory_lookups_total{cache="miss",`: 1,
	} {
		if got := e.metricValue(t, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	// The journal's own tests own its counting; here the gauge must exist.
	if v := e.metricValue(t, `bubbled_journal_backlog`); v < 0 {
		t.Errorf("bubbled_journal_backlog is missing from /metrics")
	}
	if v := e.metricValue(t, `bubbled_modem_signal_dbm{line="sim0"}`); v >= 0 || v < -113 {
		t.Errorf("signal = %v dBm, want the simulator's signal", v)
	}

	e.sim.Unplug()
	body := e.waitReady(t, 503, `"ready":false`, `"check":"line sim0"`, "unplugged")
	t.Logf("/readyz while unplugged: %s", body)
	if v := e.metricValue(t, `bubbled_line_ready{line="sim0",state="disconnected"}`); v != 0 {
		t.Errorf("bubbled_line_ready while unplugged = %v, want 0", v)
	}
	if err := e.sim.Replug(); err != nil {
		t.Fatal(err)
	}
	e.waitReady(t, 200, `"ready":true`)
}

// metricsEventually polls cond for up to 60 s.
func metricsEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
