package dendritetest

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/http"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// registerPath is the Synapse-compatible shared-secret registration endpoint Dendrite serves
// when client_api.registration_shared_secret is set.
var registerPath = mautrix.SynapseAdminURLPath{"v1", "register"}

type reqSharedSecretRegister struct {
	Nonce    string `json:"nonce"`
	Username string `json:"username"`
	Password string `json:"password"`
	Admin    bool   `json:"admin"`
	MAC      string `json:"mac"`
}

type respSharedSecretRegister struct {
	UserID      id.UserID   `json:"user_id"`
	AccessToken string      `json:"access_token"`
	DeviceID    id.DeviceID `json:"device_id"`
}

// registrationMAC is hex(HMAC-SHA1(secret, nonce NUL username NUL password NUL
// "admin"|"notadmin")), the mac of Synapse's shared-secret registration API.
func registrationMAC(secret, nonce, username, password string, admin bool) string {
	mac := hmac.New(sha1.New, []byte(secret))
	role := "notadmin"
	if admin {
		role = "admin"
	}
	for i, part := range []string{nonce, username, password, role} {
		if i > 0 {
			mac.Write([]byte{0})
		}
		mac.Write([]byte(part))
	}
	return hex.EncodeToString(mac.Sum(nil))
}

// RegisterUser creates the account @username:<ServerName> through shared-secret registration
// (GET then POST /_synapse/admin/v1/register) and returns a client logged in as it, with
// UserID, AccessToken and DeviceID set. admin makes it a Dendrite server admin. Dendrite wants
// lower-case localparts and passwords of at least 8 characters. Matrix errors
// come back as mautrix.HTTPError, so errors.Is(err, mautrix.MUserInUse) works.
func (s *Server) RegisterUser(ctx context.Context, username, password string, admin bool) (*mautrix.Client, error) {
	cli, err := mautrix.NewClient(s.URL, "", "")
	if err != nil {
		return nil, fmt.Errorf("create Matrix client for %s: %w", s.URL, err)
	}
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	_, err = cli.MakeFullRequest(ctx, mautrix.FullRequest{
		Method:       http.MethodGet,
		URL:          cli.BuildURL(registerPath),
		ResponseJSON: &nonce,
		MaxAttempts:  1,
	})
	if err != nil {
		return nil, fmt.Errorf("get registration nonce for %s: %w", username, err)
	}
	var resp respSharedSecretRegister
	_, err = cli.MakeFullRequest(ctx, mautrix.FullRequest{
		Method: http.MethodPost,
		URL:    cli.BuildURL(registerPath),
		RequestJSON: &reqSharedSecretRegister{
			Nonce:    nonce.Nonce,
			Username: username,
			Password: password,
			Admin:    admin,
			MAC:      registrationMAC(s.sharedSecret, nonce.Nonce, username, password, admin),
		},
		ResponseJSON:     &resp,
		SensitiveContent: true,
		MaxAttempts:      1,
	})
	if err != nil {
		return nil, fmt.Errorf("register Matrix user %s: %w", username, err)
	}
	if resp.UserID == "" || resp.AccessToken == "" {
		return nil, fmt.Errorf("register Matrix user %s: response lacks user_id or access_token", username)
	}
	cli.UserID = resp.UserID
	cli.AccessToken = resp.AccessToken
	cli.DeviceID = resp.DeviceID
	return cli, nil
}

// Login logs in an existing user with a password and returns a client with UserID,
// AccessToken and DeviceID set. Each call creates a new device.
func (s *Server) Login(ctx context.Context, username, password string) (*mautrix.Client, error) {
	cli, err := mautrix.NewClient(s.URL, "", "")
	if err != nil {
		return nil, fmt.Errorf("create Matrix client for %s: %w", s.URL, err)
	}
	_, err = cli.Login(ctx, &mautrix.ReqLogin{
		Type:             mautrix.AuthTypePassword,
		Identifier:       mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: username},
		Password:         password,
		StoreCredentials: true,
	})
	if err != nil {
		return nil, fmt.Errorf("log in Matrix user %s: %w", username, err)
	}
	return cli, nil
}
