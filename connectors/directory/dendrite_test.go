package directory_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/bridge/dendritetest"
	"github.com/bubbled/bubbled/connectors/directory"
	"github.com/bubbled/bubbled/connectors/directory/isfake"
)

// TestDendriteOpenID runs the whole identity-server flow against a real homeserver: Dendrite
// issues the OpenID tokens (to the bridge's appservice bot through its as_token, and to an
// ordinary user), the fake identity server verifies them through Dendrite's federation
// endpoint GET /_matrix/federation/v1/openid/userinfo, and the directory signs the terms,
// looks up, and registers again with a fresh token after the identity server forgot it.
// It skips with -short, and (through dendritetest) when Dendrite is not installed and
// BUBBLED_SKIP_DENDRITE=1.
func TestDendriteOpenID(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Dendrite; skipped with -short")
	}
	const (
		asToken = "as_token_directory_0123456789"
		tosURL  = "https://is.test/tos-1.0-en.html"
	)
	dir := t.TempDir()
	reg := filepath.Join(dir, "registration.yaml")
	if err := os.WriteFile(reg, []byte(`id: bubbled-directory
url: http://127.0.0.1:9
as_token: `+asToken+`
hs_token: hs_token_directory_0123456789
sender_localpart: bubbledbot
rate_limited: false
namespaces:
  users:
    - exclusive: true
      regex: '@sms_.*:localhost'
  aliases: []
  rooms: []
`), 0o600); err != nil {
		t.Fatal(err)
	}
	hs := dendritetest.StartT(t, dendritetest.Options{AppServiceRegistrations: []string{reg}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	owner, err := hs.RegisterUser(ctx, "owner", "owner-password", false)
	if err != nil {
		t.Fatal(err)
	}
	contact, err := hs.RegisterUser(ctx, "contact", "contact-password", false)
	if err != nil {
		t.Fatal(err)
	}
	botCli, err := mautrix.NewClient(hs.URL, id.NewUserID("bubbledbot", hs.ServerName), asToken)
	if err != nil {
		t.Fatal(err)
	}

	fake := isfake.New(isfake.Options{
		Verifier: isfake.HomeserverVerifier{Homeservers: map[string]string{hs.ServerName: hs.URL}},
		Policies: []isfake.Policy{{ID: "tos", Version: "1.0", Docs: []isfake.PolicyDoc{{Lang: "en", Name: "Terms", URL: tosURL}}}},
	})
	if err := fake.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fake.Close() })
	fake.Bind(carolNum, contact.UserID)

	tests := []struct {
		name string
		cli  *mautrix.Client
	}{
		{"appservice bot via as_token", botCli},
		{"ordinary user", owner},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake.ResetRequests()
			d, err := directory.New(directory.Config{
				IdentityServer: directory.IdentityServerConfig{URL: fake.URL(), AcceptedTerms: []string{tosURL}},
			}, directory.Options{OpenID: directory.OpenIDFunc(tc.cli.RequestOpenIDToken)})
			if err != nil {
				t.Fatal(err)
			}
			r, err := d.Lookup(ctx, carolNum)
			if err != nil || r.MXID != contact.UserID || r.Source != directory.SourceIdentityServer {
				t.Fatalf("Lookup = %+v, %v; want %s", r, err, contact.UserID)
			}
			if got := fake.Accepted(tc.cli.UserID); !slices.Equal(got, []string{tosURL}) {
				t.Errorf("identity server recorded terms %v for %s", got, tc.cli.UserID)
			}
			if r, err := d.Lookup(ctx, daveNum); err != nil || r.Found() {
				t.Errorf("unbound number: %+v, %v", r, err)
			}

			// The identity server forgets its tokens: the directory registers again with a
			// new OpenID token from Dendrite.
			fake.ExpireTokens()
			d.Invalidate(carolNum)
			if r, err := d.Lookup(ctx, carolNum); err != nil || r.MXID != contact.UserID {
				t.Fatalf("after expiry: %+v, %v", r, err)
			}
			var openIDTokens []string
			for _, req := range fake.Requests() {
				if req.Path == isfake.PathRegister {
					var body struct {
						AccessToken string `json:"access_token"`
						Server      string `json:"matrix_server_name"`
					}
					if err := jsonUnmarshal(req.Body, &body); err != nil {
						t.Fatal(err)
					}
					if body.Server != hs.ServerName {
						t.Errorf("registered with matrix_server_name %q", body.Server)
					}
					openIDTokens = append(openIDTokens, body.AccessToken)
				}
			}
			if len(openIDTokens) != 2 || openIDTokens[0] == openIDTokens[1] {
				t.Errorf("OpenID tokens used to register: %d (distinct: %v), want 2 distinct", len(openIDTokens),
					len(openIDTokens) == 2 && openIDTokens[0] != openIDTokens[1])
			}
		})
	}

	t.Run("forged OpenID token is refused by Dendrite", func(t *testing.T) {
		forged := directory.OpenIDFunc(func(context.Context) (*mautrix.RespOpenIDToken, error) {
			return &mautrix.RespOpenIDToken{AccessToken: "forged-token", TokenType: "Bearer", MatrixServerName: hs.ServerName}, nil
		})
		d, err := directory.New(directory.Config{
			IdentityServer: directory.IdentityServerConfig{URL: fake.URL(), AcceptedTerms: []string{tosURL}},
		}, directory.Options{OpenID: forged})
		if err != nil {
			t.Fatal(err)
		}
		_, err = d.Lookup(ctx, carolNum)
		if !errors.Is(err, directory.ErrIdentityServer) || !strings.Contains(err.Error(), "openid/userinfo") {
			t.Errorf("err = %v, want a registration error that points at openid/userinfo", err)
		}
		if strings.Contains(err.Error(), "forged-token") {
			t.Errorf("error carries the OpenID token: %v", err)
		}
	})
}
