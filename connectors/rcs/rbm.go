package rcs

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"

	"github.com/bubbled/bubbled/fallback"
)

// RBMScope is the OAuth 2.0 scope of the RBM API.
const RBMScope = "https://www.googleapis.com/auth/rcsbusinessmessaging"

// DefaultRBMBaseURL is Google's global RBM endpoint. Regional ones are
// https://{us,europe,asia}-rcsbusinessmessaging.googleapis.com.
const DefaultRBMBaseURL = "https://rcsbusinessmessaging.googleapis.com"

// DefaultGoogleTokenURL is used when the service account key names none.
const DefaultGoogleTokenURL = "https://oauth2.googleapis.com/token"

// RBMConfig configures an [RBM] provider. AgentID and one of
// ServiceAccountKey/ServiceAccountFile are required.
type RBMConfig struct {
	// AgentID is the RBM agent ("mybrand_abc123_agent").
	AgentID string
	// ServiceAccountKey is the agent's service account JSON key. Never
	// logged.
	ServiceAccountKey []byte
	// ServiceAccountFile is read when ServiceAccountKey is empty.
	ServiceAccountFile string
	// BaseURL is the API root; default [DefaultRBMBaseURL].
	BaseURL string
	// TokenURL overrides the key's token_uri (tests point it at a fake);
	// default the key's token_uri, else [DefaultGoogleTokenURL].
	TokenURL string
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

// RBM is the Google RCS Business Messaging provider. It authenticates with
// the agent's service account (JWT-bearer grant) and uses the documented
// REST endpoints phones.getCapabilities, phones.agentMessages.create and
// .delete, phones.agentEvents.create and files.create. Safe for concurrent
// use; it starts no goroutines.
type RBM struct {
	agentID string
	api     *apiClient
}

var _ Provider = (*RBM)(nil)

// NewRBM checks cfg and builds the provider. It reads ServiceAccountFile
// if given, but makes no network request.
func NewRBM(cfg RBMConfig) (*RBM, error) {
	if cfg.AgentID == "" {
		return nil, errors.New("rcs.rbm.agent_id is empty: set it to the agent ID shown in the Business Communications Developer Console")
	}
	key := cfg.ServiceAccountKey
	if len(key) == 0 {
		if cfg.ServiceAccountFile == "" {
			return nil, errors.New("rcs.rbm.service_account_file is empty: download the agent's service account key (JSON) and set its path")
		}
		var err error
		if key, err = os.ReadFile(cfg.ServiceAccountFile); err != nil {
			return nil, fmt.Errorf("read RBM service account key: %w (check rcs.rbm.service_account_file)", err)
		}
	}
	jwtCfg, err := google.JWTConfigFromJSON(key, RBMScope)
	if err != nil {
		return nil, fmt.Errorf("parse RBM service account key: %w (it must be the JSON key of the agent's service account)", err)
	}
	if jwtCfg.Email == "" {
		return nil, errors.New("parse RBM service account key: client_email is empty (it must be the JSON key of the agent's service account)")
	}
	if err := checkPrivateKey(jwtCfg.PrivateKey); err != nil {
		return nil, fmt.Errorf("parse RBM service account key: %w (download a new JSON key)", err)
	}
	switch {
	case cfg.TokenURL != "":
		jwtCfg.TokenURL = cfg.TokenURL
	case jwtCfg.TokenURL == "":
		jwtCfg.TokenURL = DefaultGoogleTokenURL
	}
	base := cfg.BaseURL
	if base == "" {
		base = DefaultRBMBaseURL
	}
	if u, err := url.Parse(base); err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("rcs.rbm.base_url %q is not an absolute URL: use e.g. %s", base, DefaultRBMBaseURL)
	}
	hc := newHTTPClient(cfg.HTTPClient)
	fetch := func(ctx context.Context) (*oauth2.Token, error) {
		// A fresh TokenSource holds no token, so this always performs the
		// JWT-bearer grant.
		return jwtCfg.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, hc)).Token()
	}
	return &RBM{
		agentID: cfg.AgentID,
		api:     newAPIClient("rbm", base, hc, fetch, cfg.Clock, cfg.Retry, cfg.Logger),
	}, nil
}

// checkPrivateKey makes sure the key's private_key is an RSA key in PEM,
// so later token failures are network failures, not configuration.
func checkPrivateKey(k []byte) error {
	block, _ := pem.Decode(k)
	if block == nil {
		return errors.New("private_key is not PEM")
	}
	if key, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if _, ok := key.(*rsa.PrivateKey); !ok {
			return fmt.Errorf("private_key is a %T, Google service accounts use RSA", key)
		}
		return nil
	}
	if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
		return fmt.Errorf("private_key is neither PKCS#8 nor PKCS#1: %w", err)
	}
	return nil
}

// Name returns "rbm".
func (r *RBM) Name() string { return "rbm" }

func (r *RBM) query(kv ...string) url.Values {
	q := url.Values{"agentId": {r.agentID}}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return q
}

// Capability calls phones.getCapabilities. 404 means not reachable.
func (r *RBM) Capability(ctx context.Context, e164 string) (bool, []string, error) {
	num, err := numberPath("rbm", "check capability", e164)
	if err != nil {
		return false, nil, err
	}
	var caps struct {
		Features []string `json:"features"`
	}
	found, err := r.api.capability(ctx, "/v1/phones/"+num+"/capabilities", r.query("requestId", uuidV4()), &caps)
	if err != nil || !found {
		return false, nil, err
	}
	return true, caps.Features, nil
}

// rbmAgentMessage is the AgentMessage request body.
type rbmAgentMessage struct {
	ContentMessage rbmContentMessage `json:"contentMessage"`
	TTL            string            `json:"ttl,omitempty"`
}

type rbmContentMessage struct {
	Text            string           `json:"text,omitempty"`
	ContentInfo     *rbmContentInfo  `json:"contentInfo,omitempty"`
	UploadedRbmFile *rbmUploadedFile `json:"uploadedRbmFile,omitempty"`
}

type rbmContentInfo struct {
	FileURL      string `json:"fileUrl"`
	ThumbnailURL string `json:"thumbnailUrl,omitempty"`
	ForceRefresh bool   `json:"forceRefresh,omitempty"`
}

type rbmUploadedFile struct {
	FileName      string `json:"fileName"`
	ThumbnailName string `json:"thumbnailName,omitempty"`
}

// Send calls phones.agentMessages.create with messageId = MessageID(m.EventID,
// m.Part). RBM ignores a duplicate messageId or answers 409 ALREADY_EXISTS;
// both count as sent.
func (r *RBM) Send(ctx context.Context, e164 string, m *OutboundMessage) (string, error) {
	if err := m.validate(e164); err != nil {
		return "", fmt.Errorf("rbm send message: %w", err)
	}
	id := MessageID(m.EventID, m.Part)
	body := rbmAgentMessage{}
	if m.Text != "" {
		body.ContentMessage.Text = m.Text
	} else if strings.HasPrefix(m.File.URL, "files/") {
		body.ContentMessage.UploadedRbmFile = &rbmUploadedFile{FileName: m.File.URL, ThumbnailName: m.File.ThumbnailURL}
	} else {
		body.ContentMessage.ContentInfo = &rbmContentInfo{FileURL: m.File.URL, ThumbnailURL: m.File.ThumbnailURL}
	}
	if m.TTL > 0 {
		body.TTL = strconv.FormatFloat(m.TTL.Seconds(), 'f', -1, 64) + "s"
	}
	_, err := r.api.do(ctx, apiRequest{
		op: "send message", method: http.MethodPost,
		path:   "/v1/phones/" + url.PathEscape(e164) + "/agentMessages",
		query:  r.query("messageId", id),
		body:   body,
		accept: []int{http.StatusConflict},
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

type rbmAgentEvent struct {
	EventType string `json:"eventType"`
	MessageID string `json:"messageId,omitempty"`
}

// SendTyping sends an IS_TYPING agent event. RBM has no "stopped typing"
// event (the indicator times out on the phone), so on=false does nothing.
func (r *RBM) SendTyping(ctx context.Context, e164 string, on bool) error {
	num, err := numberPath("rbm", "send typing", e164)
	if err != nil || !on {
		return err
	}
	_, err = r.api.do(ctx, apiRequest{
		op: "send typing", method: http.MethodPost,
		path:   "/v1/phones/" + num + "/agentEvents",
		query:  r.query("eventId", uuidV4()),
		body:   rbmAgentEvent{EventType: "IS_TYPING"},
		accept: []int{http.StatusConflict},
	})
	return err
}

// SendRead sends a READ agent event for the user's message messageID. The
// event ID derives from messageID, so a resend is a duplicate.
func (r *RBM) SendRead(ctx context.Context, e164, messageID string) error {
	return r.aboutMessage(ctx, "send read receipt", e164, messageID, func(num string) apiRequest {
		return apiRequest{
			method: http.MethodPost,
			path:   "/v1/phones/" + num + "/agentEvents",
			query:  r.query("eventId", readEventID(messageID)),
			body:   rbmAgentEvent{EventType: "READ", MessageID: messageID},
			accept: []int{http.StatusConflict},
		}
	})
}

// Revoke calls phones.agentMessages.delete. RBM answers 200 whether or not
// the message was still undelivered.
func (r *RBM) Revoke(ctx context.Context, e164, messageID string) error {
	return r.aboutMessage(ctx, "revoke message", e164, messageID, func(num string) apiRequest {
		return apiRequest{
			method: http.MethodDelete,
			path:   "/v1/phones/" + num + "/agentMessages/" + url.PathEscape(messageID),
			query:  r.query(),
		}
	})
}

// aboutMessage makes call op, built by build for the escaped number, after
// checking that e164 is a number and messageID is given: both name the
// message on the provider's side.
func (r *RBM) aboutMessage(ctx context.Context, op, e164, messageID string, build func(num string) apiRequest) error {
	num, err := numberPath("rbm", op, e164)
	if err != nil {
		return err
	}
	if messageID == "" {
		return fmt.Errorf("rbm %s: %w: no message ID", op, ErrInvalidRequest)
	}
	rq := build(num)
	rq.op = op
	_, err = r.api.do(ctx, rq)
	return err
}

type rbmFileRequest struct {
	FileURL      string `json:"fileUrl"`
	ThumbnailURL string `json:"thumbnailUrl,omitempty"`
}

// CreateFile calls files.create: RBM fetches fileURL (and thumbnailURL if
// not empty) once and caches it for 60 days. It returns the file's name
// ("files/…"); send it with [FileRef] URL set to that name (and
// ThumbnailURL to the thumbnail's name, if uploaded separately) to reuse
// the cached copy.
func (r *RBM) CreateFile(ctx context.Context, fileURL, thumbnailURL string) (string, error) {
	if fileURL == "" {
		return "", fmt.Errorf("rbm create file: %w: no file URL", ErrInvalidRequest)
	}
	resp, err := r.api.do(ctx, apiRequest{
		op: "create file", method: http.MethodPost,
		path:     "/v1/files",
		query:    r.query(),
		body:     rbmFileRequest{FileURL: fileURL, ThumbnailURL: thumbnailURL},
		notFound: ErrPermanent,
	})
	if err != nil {
		return "", err
	}
	var f struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(resp.body, &f); err != nil || !strings.HasPrefix(f.Name, "files/") {
		return "", &APIError{Provider: "rbm", Op: "create file", Status: resp.status,
			Message: "answer has no files/… name", Class: ErrTemporary}
	}
	return f.Name, nil
}
