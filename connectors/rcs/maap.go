package rcs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/bubbled/bubbled/fallback"
)

// MaaPConfig configures a [MaaP] provider. BotID, BaseURL, TokenURL,
// ClientID and ClientSecret are required.
type MaaPConfig struct {
	// BotID is the chatbot's ID on the platform (often "bot@domain").
	BotID string
	// BaseURL is the platform's server root; the API is below
	// {BaseURL}/bot/{APIVersion}/{BotID}.
	BaseURL string
	// APIVersion is the path version; default "v1".
	APIVersion string
	// TokenURL is the platform's OAuth 2.0 token endpoint
	// (client-credentials grant).
	TokenURL string
	// ClientID and ClientSecret are the bot's credentials. The secret is
	// never logged.
	ClientID     string
	ClientSecret string
	// Scopes are requested with the token, if the platform wants any.
	Scopes []string
	// CredentialsInBody sends client_id and client_secret as form fields
	// instead of HTTP Basic authentication (RFC 6749 §2.3.1 prefers
	// Basic; some platforms only accept the form fields).
	CredentialsInBody bool
	// HTTPClient makes API and token requests; default a client with a
	// 30 s timeout.
	HTTPClient *http.Client
	// Clock times retries; default [fallback.SystemClock].
	Clock fallback.Clock
	// Retry is the retry policy; zero fields take its defaults.
	Retry RetryPolicy
	// Logger gets debug lines about retries; default zap.NewNop().
	Logger *zap.Logger
}

// MaaP is the GSMA MaaP chatbot API provider (FNW.11): contactCapabilities,
// messages (text, file, isTyping) and messages/{msgId}/status (read
// receipts and revocation), with a client-credentials bearer token. Safe
// for concurrent use; it starts no goroutines.
type MaaP struct {
	prefix string // escaped "/bot/v1/{botId}"
	api    *apiClient
}

var _ Provider = (*MaaP)(nil)

// NewMaaP checks cfg and builds the provider; it makes no network request.
func NewMaaP(cfg MaaPConfig) (*MaaP, error) {
	switch {
	case cfg.BotID == "":
		return nil, errors.New("rcs.maap.bot_id is empty: set it to the chatbot ID the platform assigned")
	case cfg.ClientID == "" || cfg.ClientSecret == "":
		return nil, errors.New("rcs.maap.client_id or client_secret is empty: set the bot's API credentials from the platform's console")
	}
	for _, kv := range [][2]string{{"base_url", cfg.BaseURL}, {"token_url", cfg.TokenURL}} {
		if u, err := url.Parse(kv[1]); err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("rcs.maap.%s %q is not an absolute URL: set the platform's %s", kv[0], kv[1], kv[0])
		}
	}
	version := cfg.APIVersion
	if version == "" {
		version = "v1"
	}
	hc := newHTTPClient(cfg.HTTPClient)
	cc := &clientcredentials.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		TokenURL:     cfg.TokenURL,
		Scopes:       cfg.Scopes,
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
	if cfg.CredentialsInBody {
		cc.AuthStyle = oauth2.AuthStyleInParams
	}
	fetch := func(ctx context.Context) (*oauth2.Token, error) {
		return cc.Token(context.WithValue(ctx, oauth2.HTTPClient, hc))
	}
	return &MaaP{
		prefix: "/bot/" + url.PathEscape(version) + "/" + url.PathEscape(cfg.BotID),
		api:    newAPIClient("maap", cfg.BaseURL, hc, fetch, cfg.Clock, cfg.Retry, cfg.Logger),
	}, nil
}

// Name returns "maap".
func (p *MaaP) Name() string { return "maap" }

// maapCapabilityNames are the capabilities that make a number reachable by
// a chatbot.
var maapCapabilityNames = []string{"chatBotCommunication", "chat"}

// Capability calls GET contactCapabilities?userContact=. 404 means not an
// RCS user; a 200 counts as reachable when the list has "chat" or
// "chatBotCommunication".
func (p *MaaP) Capability(ctx context.Context, e164 string) (bool, []string, error) {
	if _, err := numberPath("maap", "check capability", e164); err != nil {
		return false, nil, err
	}
	var caps struct {
		Capabilities []string `json:"capabilities"`
	}
	found, err := p.api.capability(ctx, p.prefix+"/contactCapabilities", url.Values{"userContact": {e164}}, &caps)
	if err != nil || !found {
		return false, nil, err
	}
	reachable := false
	for _, c := range caps.Capabilities {
		for _, want := range maapCapabilityNames {
			if strings.EqualFold(c, want) {
				reachable = true
			}
		}
	}
	return reachable, caps.Capabilities, nil
}

// maapMessage is the body of POST messages and PUT messages/{id}/status.
type maapMessage struct {
	RCSMessage     maapRCSMessage      `json:"RCSMessage"`
	MessageContact *maapMessageContact `json:"messageContact,omitempty"`
}

type maapRCSMessage struct {
	MsgID       string           `json:"msgId,omitempty"`
	TextMessage string           `json:"textMessage,omitempty"`
	FileMessage *maapFileMessage `json:"fileMessage,omitempty"`
	IsTyping    string           `json:"isTyping,omitempty"`
	Status      string           `json:"status,omitempty"`
}

type maapFileMessage struct {
	FileURL      string `json:"fileUrl"`
	FileName     string `json:"fileName,omitempty"`
	FileMIMEType string `json:"fileMIMEType,omitempty"`
	FileSize     int64  `json:"fileSize,omitempty"`
	ThumbnailURL string `json:"thumbnailUrl,omitempty"`
}

type maapMessageContact struct {
	UserContact string `json:"userContact"`
}

// Send posts an RCSMessage with msgId = MessageID(m.EventID, m.Part). A 409
// (the platform already has that msgId) counts as sent.
func (p *MaaP) Send(ctx context.Context, e164 string, m *OutboundMessage) (string, error) {
	if err := m.validate(e164); err != nil {
		return "", fmt.Errorf("maap send message: %w", err)
	}
	id := MessageID(m.EventID, m.Part)
	body := maapMessage{
		RCSMessage:     maapRCSMessage{MsgID: id, TextMessage: m.Text},
		MessageContact: &maapMessageContact{UserContact: e164},
	}
	if m.File != nil {
		body.RCSMessage.FileMessage = &maapFileMessage{
			FileURL: m.File.URL, FileName: m.File.Name, FileMIMEType: m.File.MIMEType,
			FileSize: m.File.Size, ThumbnailURL: m.File.ThumbnailURL,
		}
	}
	_, err := p.api.do(ctx, apiRequest{
		op: "send message", method: http.MethodPost,
		path:   p.prefix + "/messages",
		body:   body,
		accept: []int{http.StatusConflict},
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

// SendTyping posts an isTyping "active" or "idle" message.
func (p *MaaP) SendTyping(ctx context.Context, e164 string, on bool) error {
	if _, err := numberPath("maap", "send typing", e164); err != nil {
		return err
	}
	state := "idle"
	if on {
		state = "active"
	}
	_, err := p.api.do(ctx, apiRequest{
		op: "send typing", method: http.MethodPost,
		path: p.prefix + "/messages",
		body: maapMessage{
			RCSMessage:     maapRCSMessage{IsTyping: state},
			MessageContact: &maapMessageContact{UserContact: e164},
		},
	})
	return err
}

// SendRead sets the user's message to "displayed". The platform identifies
// the message by its msgId alone; e164 is only checked.
func (p *MaaP) SendRead(ctx context.Context, e164, messageID string) error {
	return p.setStatus(ctx, "send read receipt", e164, messageID, "displayed")
}

// Revoke sets the agent's message to "cancelled"; the platform refuses
// (404/409, [ErrPermanent]) once it was delivered.
func (p *MaaP) Revoke(ctx context.Context, e164, messageID string) error {
	return p.setStatus(ctx, "revoke message", e164, messageID, "cancelled")
}

func (p *MaaP) setStatus(ctx context.Context, op, e164, messageID, status string) error {
	if _, err := numberPath("maap", op, e164); err != nil {
		return err
	}
	if messageID == "" {
		return fmt.Errorf("maap %s: %w: no message ID", op, ErrInvalidRequest)
	}
	_, err := p.api.do(ctx, apiRequest{
		op: op, method: http.MethodPut,
		path:     p.prefix + "/messages/" + url.PathEscape(messageID) + "/status",
		body:     maapMessage{RCSMessage: maapRCSMessage{Status: status}},
		notFound: ErrPermanent,
	})
	return err
}
