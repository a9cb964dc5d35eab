package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bubbled/bubbled/fallback"
)

func loadAlert(t *testing.T, name string) (string, *AlertmanagerPayload) {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var p AlertmanagerPayload
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	return string(raw), &p
}

func TestFormatAlert(t *testing.T) {
	_, firing := loadAlert(t, "alertmanager_firing.json")
	_, resolved := loadAlert(t, "alertmanager_resolved.json")
	many := *firing
	many.Alerts = nil
	for i := range 8 {
		many.Alerts = append(many.Alerts, Alert{Status: "firing", Labels: map[string]string{"alertname": "DiskFull", "instance": fmt.Sprintf("db-%d", i)}})
	}
	many.Alerts = append(many.Alerts, Alert{Status: "resolved", Labels: map[string]string{"alertname": "DiskFull", "instance": "db-9"}})
	many.TruncatedAlerts = 2
	for _, tc := range []struct {
		name string
		p    *AlertmanagerPayload
		want string
	}{
		{"firing", firing, "[FIRING:2] DiskFull\nseverity=critical\n- db-1:9100: Disk /var is 97% full\n- db-2:9100: Disk /var is 95% full"},
		{"resolved", resolved, "[RESOLVED:2] DiskFull\nseverity=critical\n- db-1:9100: Disk /var is 97% full\n- db-2:9100: Disk /var is 95% full"},
		{"many, mixed, truncated", &many, "[FIRING:10] DiskFull\nseverity=critical\n- db-0\n- db-1\n- db-2\n- db-3\n- db-4\n... and 5 more\n(1 resolved)"},
		{"common summary and group labels", &AlertmanagerPayload{Status: "firing", GroupLabels: map[string]string{"alertname": "Down", "cluster": "eu"},
			CommonAnnotations: map[string]string{"summary": "Target is down"},
			Alerts:            []Alert{{Status: "firing", Labels: map[string]string{"alertname": "Down", "job": "api"}, Annotations: map[string]string{"summary": "Target is down"}}}},
			"[FIRING:1] Down (cluster=eu)\nTarget is down\n- api"},
		{"huge", &AlertmanagerPayload{Status: "firing", CommonAnnotations: map[string]string{"description": strings.Repeat("long ", 200)}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := FormatAlert(tc.p)
			if tc.want == "" {
				if n := len([]rune(got)); n > alertSMSMax || !strings.HasSuffix(got, "...") {
					t.Errorf("huge notification: %d characters %q, want at most %d ending in ...", n, got, alertSMSMax)
				}
				return
			}
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestAlertmanagerWebhook(t *testing.T) {
	h := newHarness(t, "", nil)
	h.start(t)
	firing, _ := loadAlert(t, "alertmanager_firing.json")
	resolved, _ := loadAlert(t, "alertmanager_resolved.json")
	code, _, out := h.do(t, http.MethodPost, "/api/v1/alertmanager?to="+bob+"&to=%2B15557650000", secretA, firing)
	if code != http.StatusAccepted || len(out["ids"].([]any)) != 2 {
		t.Fatalf("firing = %d %v, want 202 with two IDs", code, out)
	}
	// An unescaped + reads as a space in a query; it is taken as the +.
	code, _, out = h.do(t, http.MethodPost, "/api/v1/alertmanager?to="+bob, secretA, resolved)
	if code != http.StatusAccepted {
		t.Fatalf("resolved = %d %v", code, out)
	}
	h.sender.waitCounts(t, 3, 3)
	var texts []string
	h.sender.mu.Lock()
	for _, m := range h.sender.sent {
		if m.To == bob {
			texts = append(texts, m.Text)
		}
	}
	h.sender.mu.Unlock()
	if len(texts) != 2 || !strings.HasPrefix(texts[0], "[FIRING:2] DiskFull") || !strings.HasPrefix(texts[1], "[RESOLVED:2] DiskFull") {
		t.Errorf("bob got %q, want the firing then the resolved notification", texts)
	}

	// One recipient the token may not text refuses the whole notification.
	code, _, out = h.do(t, http.MethodPost, "/api/v1/alertmanager?to="+bob+"&to=%2B19995550000", secretA, firing)
	if code != http.StatusForbidden {
		t.Errorf("forbidden recipient = %d %v, want 403", code, out)
	}
	for _, tc := range []struct{ name, path, body string }{
		{"no recipient", "/api/v1/alertmanager", firing},
		{"not a notification", "/api/v1/alertmanager?to=" + bob, `{"status":"maybe"}`},
	} {
		if code, _, out := h.do(t, http.MethodPost, tc.path, secretA, tc.body); code != http.StatusUnprocessableEntity {
			t.Errorf("%s = %d %v, want 422", tc.name, code, out)
		}
	}
	if n := h.rows(t); n != 3 {
		t.Errorf("%d messages stored, want 3", n)
	}
}

// shiftedClock is the system clock moved forward by a settable offset.
type shiftedClock struct {
	fallback.SystemClock
	mu  sync.Mutex
	off time.Duration
}

func (c *shiftedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *shiftedClock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// TestAlertmanagerRetryIsOneMessage: Alertmanager posts a notification
// again when it did not see the 202 (timeout, lost answer); that retry is
// the same message, even across the window boundary. The same alerts
// resolved, or repeated after repeat_interval, are new messages. A restart
// in between keeps the keys (they are stored with the message).
func TestAlertmanagerRetryIsOneMessage(t *testing.T) {
	clk := &shiftedClock{}
	dbPath := filepath.Join(t.TempDir(), "bubbled.db")
	h := newHarness(t, dbPath, func(c *Config) { c.Clock = clk })
	h.start(t)
	firing, _ := loadAlert(t, "alertmanager_firing.json")
	resolved, _ := loadAlert(t, "alertmanager_resolved.json")
	post := func(h *harness, body string) string {
		t.Helper()
		code, _, out := h.do(t, http.MethodPost, "/api/v1/alertmanager?to="+bob, secretA, body)
		if code != http.StatusAccepted {
			t.Fatalf("POST = %d %v, want 202", code, out)
		}
		return out["ids"].([]any)[0].(string)
	}
	first := post(h, firing)
	if again := post(h, firing); again != first {
		t.Errorf("a retry right away got a new message %s, want %s", again, first)
	}
	clk.advance(alertRetryWindow) // into the next window
	h2 := newHarness(t, dbPath, func(c *Config) { c.Clock = clk })
	h2.start(t)
	if again := post(h2, firing); again != first {
		t.Errorf("a retry after a restart, one window later, got a new message %s, want %s", again, first)
	}
	if res := post(h2, resolved); res == first {
		t.Errorf("the resolved notification was taken for the firing one")
	}
	clk.advance(4 * time.Hour) // repeat_interval
	if rep := post(h2, firing); rep == first {
		t.Errorf("a repeat after 4 h was taken for a retry")
	}
	if n := h2.rows(t); n != 3 {
		t.Errorf("%d messages stored, want 3 (firing, resolved, the repeat)", n)
	}
}
