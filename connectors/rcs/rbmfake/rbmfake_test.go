package rbmfake

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/oauth2/google"
)

// TestFakeRejectsWrongRequests shows the fake checks what a client sends,
// answering in google.rpc.Status shape.
func TestFakeRejectsWrongRequests(t *testing.T) {
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetCapabilities("+15551230001", "RICHCARD_STANDALONE")
	cfg, err := google.JWTConfigFromJSON(s.ServiceAccountJSON(), Scope)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.TokenSource(context.Background()).Token()
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	wrongScope, _ := google.JWTConfigFromJSON(s.ServiceAccountJSON(), "https://www.googleapis.com/auth/cloud-platform")
	if _, err := wrongScope.TokenSource(context.Background()).Token(); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("token with the wrong scope: %v", err)
	}

	const uuid = "8d564b98-3baf-5770-afe3-dbbb5e678e1b"
	base := s.URL() + "/v1/phones/+15551230001/agentMessages?agentId=" + s.AgentID()
	cases := []struct {
		name, method, url, body, bearer string
		status                          int
		statusName                      string
	}{
		{name: "no bearer", method: "POST", url: base + "&messageId=" + uuid, body: `{"contentMessage":{"text":"x"}}`, status: 401, statusName: "UNAUTHENTICATED"},
		{name: "foreign bearer", method: "POST", url: base + "&messageId=" + uuid, body: `{"contentMessage":{"text":"x"}}`, bearer: "ya29.other", status: 401, statusName: "UNAUTHENTICATED"},
		{name: "messageId not a UUID", method: "POST", url: base + "&messageId=42", body: `{"contentMessage":{"text":"x"}}`, status: 400, statusName: "INVALID_ARGUMENT"},
		{name: "unknown JSON field", method: "POST", url: base + "&messageId=" + uuid, body: `{"contentMessage":{"txt":"x"}}`, status: 400, statusName: "INVALID_ARGUMENT"},
		{name: "two contents", method: "POST", url: base + "&messageId=" + uuid, body: `{"contentMessage":{"text":"x","contentInfo":{"fileUrl":"https://a/b"}}}`, status: 400, statusName: "INVALID_ARGUMENT"},
		{name: "bad ttl", method: "POST", url: base + "&messageId=" + uuid, body: `{"contentMessage":{"text":"x"},"ttl":"1h"}`, status: 400, statusName: "INVALID_ARGUMENT"},
		{name: "other agent", method: "POST", url: s.URL() + "/v1/phones/+15551230001/agentMessages?agentId=x&messageId=" + uuid, body: `{"contentMessage":{"text":"x"}}`, status: 403, statusName: "PERMISSION_DENIED"},
		{name: "national number", method: "GET", url: s.URL() + "/v1/phones/0155512300/capabilities?agentId=" + s.AgentID() + "&requestId=" + uuid, status: 400, statusName: "INVALID_ARGUMENT"},
		{name: "unknown number", method: "GET", url: s.URL() + "/v1/phones/+15559999999/capabilities?agentId=" + s.AgentID() + "&requestId=" + uuid, status: 404, statusName: "NOT_FOUND"},
		{name: "READ without messageId", method: "POST", url: s.URL() + "/v1/phones/+15551230001/agentEvents?agentId=" + s.AgentID() + "&eventId=" + uuid, body: `{"eventType":"READ"}`, status: 400, statusName: "INVALID_ARGUMENT"},
		{name: "good message", method: "POST", url: base + "&messageId=" + uuid, body: `{"contentMessage":{"text":"x"},"ttl":"60s"}`, status: 200},
		{name: "duplicate message", method: "POST", url: base + "&messageId=" + uuid, body: `{"contentMessage":{"text":"x"}}`, status: 409, statusName: "ALREADY_EXISTS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.url, strings.NewReader(tc.body))
			bearer := tc.bearer
			if bearer == "" && tc.name != "no bearer" {
				bearer = tok.AccessToken
			}
			if bearer != "" {
				req.Header.Set("Authorization", "Bearer "+bearer)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, b, tc.status)
			}
			if tc.statusName != "" {
				var e struct {
					Error struct {
						Code   int    `json:"code"`
						Status string `json:"status"`
					} `json:"error"`
				}
				if err := json.Unmarshal(b, &e); err != nil || e.Error.Status != tc.statusName || e.Error.Code != tc.status {
					t.Fatalf("error body %s, want status %s", b, tc.statusName)
				}
			}
		})
	}
	if n := len(s.Messages()); n != 1 {
		t.Fatalf("fake recorded %d messages, want 1", n)
	}
}

func TestPushSigning(t *testing.T) {
	s, err := Start(Options{ClientToken: "k"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var gotSig string
	var gotBody []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotSig = r.Header.Get("X-Goog-Signature")
		gotBody, _ = io.ReadAll(r.Body)
	}))
	defer srv.Close()
	data, _ := s.UserMessage("+15551230001", "hi")
	cases := []struct {
		name    string
		sign    Signing
		sigOK   bool
		dataOK  bool
		withSig bool
	}{
		{name: "signed", sign: Signed, sigOK: true, dataOK: true, withSig: true},
		{name: "tampered", sign: Tampered, sigOK: true, withSig: true},
		{name: "wrong key", sign: WrongKey, dataOK: true, withSig: true},
		{name: "unsigned", sign: Unsigned, dataOK: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Push(context.Background(), srv.URL, data, tc.sign); err != nil {
				t.Fatal(err)
			}
			var env struct {
				Message struct {
					Data string `json:"data"`
				} `json:"message"`
			}
			if err := json.Unmarshal(gotBody, &env); err != nil {
				t.Fatal(err)
			}
			sent, err := base64.StdEncoding.DecodeString(env.Message.Data)
			if err != nil {
				t.Fatal(err)
			}
			if (string(sent) == string(data)) != tc.dataOK {
				t.Errorf("data unchanged = %v, want %v", !tc.dataOK, tc.dataOK)
			}
			if (gotSig == Sign("k", data)) != tc.sigOK {
				t.Errorf("signature of original data = %v, want %v", !tc.sigOK, tc.sigOK)
			}
			if (gotSig != "") != tc.withSig {
				t.Errorf("signature header present = %v", gotSig != "")
			}
		})
	}
}
