package modemsim

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestControlHandler(t *testing.T) {
	sim, err := Start(Options{OwnNumber: "+15550001111"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	srv := httptest.NewServer(ControlHandler(sim))
	t.Cleanup(srv.Close)

	// The cases run in order: the stored count grows with each accepted SMS.
	cases := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantBody   string // substring
		wantStored int
	}{
		{"sent is an empty JSON list at first", http.MethodGet, "/sent", "", http.StatusOK, "[]", 0},
		{"sms without sender", http.MethodPost, "/sms", "hi", http.StatusBadRequest, "missing ?from=", 0},
		{"sms without text", http.MethodPost, "/sms?from=%2B15557654321", "", http.StatusBadRequest, "empty text", 0},
		{"sms too long", http.MethodPost, "/sms?from=%2B15557654321", strings.Repeat("x", maxSMSBody+1), http.StatusRequestEntityTooLarge, "longer than", 0},
		{"sms from a bad sender", http.MethodPost, "/sms?from=this-is-not-a-number", "hi", http.StatusConflict, "longer than 11", 0},
		{"sms delivered", http.MethodPost, "/sms?from=%2B15557654321", "Hello from the phone", http.StatusNoContent, "", 1},
		{"stored lists the message", http.MethodGet, "/stored", "", http.StatusOK, `"index": 1`, 1},
		{"unescaped plus reads as international", http.MethodPost, "/sms?from=+15557654321", "Hi again", http.StatusNoContent, "", 2},
		{"stored keeps the international sender", http.MethodGet, "/stored", "", http.StatusOK, `"index": 2`, 2},
		{"status report without parameters", http.MethodPost, "/status-report", "", http.StatusBadRequest, "want ?mr=", 2},
		{"status report for an unknown submit", http.MethodPost, "/status-report?mr=7&st=0", "", http.StatusConflict, "", 2},
		{"pending is a JSON list", http.MethodGet, "/pending", "", http.StatusOK, "[]", 2},
		{"wrong method", http.MethodGet, "/sms", "", http.StatusMethodNotAllowed, "", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != c.wantStatus {
				t.Errorf("status %d (%s), want %d", resp.StatusCode, body, c.wantStatus)
			}
			if !strings.Contains(string(body), c.wantBody) {
				t.Errorf("body %q lacks %q", body, c.wantBody)
			}
			if resp.StatusCode == http.StatusOK && !json.Valid(body) {
				t.Errorf("body is not JSON: %q", body)
			}
			if got := sim.Stored(); got != c.wantStored {
				t.Errorf("the SIM stores %d messages, want %d", got, c.wantStored)
			}
		})
	}
}
