package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestHandler(t *testing.T) {
	m := New()
	lines := []LineState{{ID: "sim0", State: "ready", Ready: true, QueueLength: 2, OldestQueued: 3 * time.Second,
		HaveRadio: true, Registered: true, SignalDBm: -71, RSSI: 21}}
	hsErr := errors.New("GET http://hs/_matrix/client/versions: connection refused")
	m.SetSources(Sources{
		Lines:          func(context.Context) []LineState { return lines },
		JournalBacklog: func(context.Context) (int, error) { return 4, nil },
		Homeserver:     func(context.Context) error { return hsErr },
	})
	m.Message(Out, "sms", "sent")
	m.Parts(Out, "sim0", 3)
	m.SendLatency("sms", 1500*time.Millisecond)
	m.Recovery("sim0", "resynchronise")
	m.DirectoryLookup("", "miss")
	m.WebhookRejected("rbm", 401)
	srv, err := Listen("127.0.0.1:0", m.Handler(false))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	base := "http://" + srv.Addr()

	code, body := get(t, "GET", base+"/metrics")
	for _, want := range []string{
		`bubbled_messages_total{direction="out",result="sent",route="sms"} 1`,
		`bubbled_sms_parts_total{direction="out",line="sim0"} 3`,
		`bubbled_send_latency_seconds_count{route="sms"} 1`,
		`bubbled_modem_recovery_steps_total{line="sim0",step="resynchronise"} 1`,
		`bubbled_directory_lookups_total{cache="miss",source="none"} 1`,
		`bubbled_webhook_rejections_total{source="rbm",status="401"} 1`,
		`bubbled_queue_depth{line="sim0"} 2`,
		`bubbled_queue_oldest_age_seconds{line="sim0"} 3`,
		`bubbled_line_ready{line="sim0",state="ready"} 1`,
		`bubbled_modem_registered{line="sim0"} 1`,
		`bubbled_modem_signal_dbm{line="sim0"} -71`,
		`bubbled_journal_backlog 4`,
		`go_goroutines`,
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %s", code, want)
		}
	}

	tests := []struct {
		name     string
		hs       error
		lines    []LineState
		wantCode int
		wantBody []string
	}{
		{"homeserver down", hsErr, lines, 503, []string{`"ready":false`, `"check":"homeserver"`, "connection refused"}},
		{"line unplugged", nil, []LineState{{ID: "sim0", State: "disconnected", Problem: "the modem is gone", QueueLength: -1}}, 503,
			[]string{`"check":"line sim0"`, "the modem is gone", `"sim0":"disconnected"`}},
		{"all ready", nil, lines, 200, []string{`"ready":true`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hsErr, lines = tt.hs, tt.lines
			code, body := get(t, "GET", base+"/readyz")
			if code != tt.wantCode {
				t.Errorf("/readyz = %d, want %d: %s", code, tt.wantCode, body)
			}
			var rd Readiness
			if err := json.Unmarshal([]byte(body), &rd); err != nil {
				t.Errorf("/readyz body is not JSON: %v: %s", err, body)
			}
			for _, want := range tt.wantBody {
				if !strings.Contains(body, want) {
					t.Errorf("/readyz body lacks %s: %s", want, body)
				}
			}
		})
	}
	if code, _ := get(t, "GET", base+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, _ := get(t, "POST", base+"/metrics"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics = %d, want 405", code)
	}
	if code, _ := get(t, "GET", base+"/debug/pprof/"); code != 404 {
		t.Errorf("/debug/pprof/ without pprof = %d, want 404", code)
	}
}

func TestNilMetricsIsANoOp(t *testing.T) {
	var m *Metrics
	m.Message(In, "sms", "bridged")
	m.Parts(In, "sim0", 1)
	m.SendLatency("sms", time.Second)
	m.Recovery("sim0", "x")
	m.DirectoryLookup("local", "hit")
	m.WebhookRejected("maap", 401)
	m.SetSources(Sources{})
	if m.Registry() != nil {
		t.Error("a nil Metrics has a registry")
	}
}
