package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:0", true},
		{"127.0.0.1:8080", true},
		{"[::1]:8080", true},
		{"0.0.0.0:8080", false},
		{":8080", false},
		{"localhost:8080", false},
		{"192.168.1.2:8080", false},
		{"127.0.0.1", false},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			if err := checkLoopback(tc.addr); (err == nil) != tc.ok {
				t.Fatalf("checkLoopback(%q) = %v, want ok=%v", tc.addr, err, tc.ok)
			}
		})
	}
}

func TestControlAPI(t *testing.T) {
	sim, err := modemsim.Start(modemsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	srv := httptest.NewServer(modemsim.ControlHandler(sim))
	defer srv.Close()

	tests := []struct {
		name, method, path, body string
		status                   int
	}{
		{"deliver", http.MethodPost, "/sms?from=%2B15551234567", "hello", http.StatusNoContent},
		{"deliver without sender", http.MethodPost, "/sms", "hello", http.StatusBadRequest},
		{"report for unknown MR", http.MethodPost, "/status-report?mr=9&st=0", "", http.StatusConflict},
		{"bad report query", http.MethodPost, "/status-report?mr=x", "", http.StatusBadRequest},
		{"sent", http.MethodGet, "/sent", "", http.StatusOK},
		{"stored", http.MethodGet, "/stored", "", http.StatusOK},
		{"pending", http.MethodGet, "/pending", "", http.StatusOK},
		{"wrong method", http.MethodGet, "/sms", "", http.StatusMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	resp, err := http.Get(srv.URL + "/stored")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var stored []modemsim.StoredMessage
	if err := json.NewDecoder(resp.Body).Decode(&stored); err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0].Index != 1 || stored[0].Stat != 0 {
		t.Fatalf("stored = %+v, want the delivered message", stored)
	}
	resp2, err := http.Get(srv.URL + "/sent")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	var sent []modemsim.Sent
	if err := json.NewDecoder(resp2.Body).Decode(&sent); err != nil || sent == nil || len(sent) != 0 {
		t.Fatalf("sent = %v, %v; want an empty JSON list", sent, err)
	}
}
