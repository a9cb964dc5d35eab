package maapfake

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2/clientcredentials"
)

// TestFakeRejectsWrongRequests shows the fake checks what a client sends,
// answering with an OMA RequestError.
func TestFakeRejectsWrongRequests(t *testing.T) {
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetCapabilities("+15551230001", "chat")
	cc := clientcredentials.Config{ClientID: s.ClientID(), ClientSecret: s.ClientSecret(), TokenURL: s.TokenURL()}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	bad := clientcredentials.Config{ClientID: s.ClientID(), ClientSecret: "nope", TokenURL: s.TokenURL()}
	if _, err := bad.Token(context.Background()); err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("token with a wrong secret: %v", err)
	}

	const uuid = "8d564b98-3baf-5770-afe3-dbbb5e678e1b"
	msgs := s.URL() + "/bot/v1/" + s.BotID() + "/messages"
	text := `{"RCSMessage":{"msgId":"` + uuid + `","textMessage":"x"},"messageContact":{"userContact":"+15551230001"}}`
	cases := []struct {
		name, method, url, body string
		noAuth                  bool
		status                  int
		errID                   string
	}{
		{name: "no bearer", method: "POST", url: msgs, body: text, noAuth: true, status: 401, errID: "POL0001"},
		{name: "other bot", method: "POST", url: s.URL() + "/bot/v1/other/messages", body: text, status: 403, errID: "POL1001"},
		{name: "unknown field", method: "POST", url: msgs, body: `{"RCSMessage":{"msgId":"` + uuid + `","text":"x"},"messageContact":{"userContact":"+15551230001"}}`, status: 400, errID: "SVC0001"},
		{name: "no contact", method: "POST", url: msgs, body: `{"RCSMessage":{"msgId":"` + uuid + `","textMessage":"x"}}`, status: 400, errID: "SVC0002"},
		{name: "msgId not a UUID", method: "POST", url: msgs, body: `{"RCSMessage":{"msgId":"1","textMessage":"x"},"messageContact":{"userContact":"+15551230001"}}`, status: 400, errID: "SVC0002"},
		{name: "non-RCS contact", method: "POST", url: msgs, body: `{"RCSMessage":{"msgId":"` + uuid + `","textMessage":"x"},"messageContact":{"userContact":"+15559999999"}}`, status: 404, errID: "SVC0004"},
		{name: "capability of national number", method: "GET", url: s.URL() + "/bot/v1/" + s.BotID() + "/contactCapabilities?userContact=0155512300", status: 400, errID: "SVC0002"},
		{name: "good message", method: "POST", url: msgs, body: text, status: 202},
		{name: "duplicate msgId", method: "POST", url: msgs, body: text, status: 409, errID: "SVC0005"},
		{name: "read of unknown user message", method: "PUT", url: msgs + "/zzz/status", body: `{"RCSMessage":{"status":"displayed"}}`, status: 404, errID: "SVC0004"},
		{name: "cancel", method: "PUT", url: msgs + "/" + uuid + "/status", body: `{"RCSMessage":{"status":"cancelled"}}`, status: 204},
		{name: "cancel twice", method: "PUT", url: msgs + "/" + uuid + "/status", body: `{"RCSMessage":{"status":"cancelled"}}`, status: 409, errID: "POL2001"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.url, strings.NewReader(tc.body))
			if !tc.noAuth {
				req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
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
			if tc.errID != "" {
				var e struct {
					RequestError map[string]struct {
						MessageID string `json:"messageId"`
					} `json:"RequestError"`
				}
				if err := json.Unmarshal(b, &e); err != nil || len(e.RequestError) != 1 {
					t.Fatalf("error body %s", b)
				}
				for _, v := range e.RequestError {
					if v.MessageID != tc.errID {
						t.Fatalf("error %s, want %s", b, tc.errID)
					}
				}
			}
		})
	}
	if m := s.Messages(); len(m) != 1 || m[0].Status != "cancelled" {
		t.Fatalf("messages = %+v", m)
	}
}
