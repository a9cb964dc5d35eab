package mms

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ClientConfig is the MMS data path of one modem (network.mms).
type ClientConfig struct {
	// MMSC is the URL m-send-req and m-notifyresp-ind are POSTed to.
	MMSC string
	// Proxy is the carrier's MMS proxy, "host:port" or a URL; "" = none.
	Proxy string
	// Interface binds every MMS connection to this network interface
	// (SO_BINDTODEVICE), e.g. "wwan0"; "" = default routing.
	Interface string
	// UserAgent and UAProf (a profile URL sent in UAProfHeader, default
	// "x-wap-profile") are what some carriers require.
	UserAgent, UAProf, UAProfHeader string
	// MaxSize bounds a retrieved message (default 1 MiB).
	MaxSize int64
	// Timeout bounds one HTTP exchange (default 60 s, AOSP's socket timeout).
	Timeout time.Duration
}

// Client talks to the MMSC over the MMS data path. Safe for concurrent use;
// it starts no goroutines of its own (net/http's idle connections aside).
type Client struct {
	cfg  ClientConfig
	http *http.Client
}

// ErrExpired reports a content location the MMSC no longer serves (404 or
// 410): retrying will not help.
var ErrExpired = errors.New("the MMSC no longer has this message (expired or already fetched)")

// HTTPError is a non-2xx answer of the MMSC. Temporary reports whether a
// retry may succeed (5xx, 408, 429).
type HTTPError struct {
	Status string
	Body   string // the first 200 bytes, for the operator
	Code   int
}

func (e *HTTPError) Error() string {
	hint := ""
	if e.Code == http.StatusPreconditionFailed || e.Code == http.StatusForbidden {
		hint = " (carriers answer this to a wrong user agent or profile: set network.mms.user_agent / uaprof)"
	}
	return fmt.Sprintf("MMSC answered %s%s: %q", e.Status, hint, e.Body)
}

// Temporary reports whether retrying later may help.
func (e *HTTPError) Temporary() bool {
	return e.Code >= 500 || e.Code == http.StatusRequestTimeout || e.Code == http.StatusTooManyRequests
}

// NewClient checks cfg and builds the client. It does no I/O.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = 1 << 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.UAProfHeader == "" {
		cfg.UAProfHeader = "x-wap-profile"
	}
	if cfg.MMSC != "" {
		if u, err := url.Parse(cfg.MMSC); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("MMSC URL %q is not an http(s) URL with a host: copy it from the carrier's APN settings (mmsc)", cfg.MMSC)
		}
	}
	dialer := &net.Dialer{Timeout: cfg.Timeout, Control: bindControl(cfg.Interface)}
	tr := &http.Transport{DialContext: dialer.DialContext, MaxIdleConns: 2, IdleConnTimeout: 30 * time.Second}
	if cfg.Proxy != "" {
		p := cfg.Proxy
		if !strings.Contains(p, "://") {
			p = "http://" + p
		}
		u, err := url.Parse(p)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("MMS proxy %q is not host:port: copy it from the carrier's APN settings (mmsproxy:mmsport)", cfg.Proxy)
		}
		tr.Proxy = http.ProxyURL(u)
	}
	return &Client{cfg: cfg, http: &http.Client{Transport: tr, Timeout: cfg.Timeout}}, nil
}

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

func (c *Client) header(req *http.Request) {
	req.Header.Set("Accept", "*/*, application/vnd.wap.mms-message, application/vnd.wap.sic")
	req.Header.Set("Accept-Language", "en")
	if c.cfg.UserAgent != "" {
		req.Header.Set("User-Agent", c.cfg.UserAgent)
	}
	if c.cfg.UAProf != "" {
		req.Header.Set(c.cfg.UAProfHeader, c.cfg.UAProf)
	}
}

// Fetch GETs a content location and decodes the m-retrieve-conf. It
// returns ErrExpired for 404/410, an *HTTPError for other non-2xx answers
// and a *DecodeError for an undecodable answer. The URL is used exactly as
// given (carrier hosts are often single labels or bare IPs).
func (c *Client) Fetch(ctx context.Context, location string) (*PDU, error) {
	p, _, err := c.fetch(ctx, location)
	return p, err
}

// fetch is Fetch that also returns the bytes the MMSC served.
func (c *Client) fetch(ctx context.Context, location string) (*PDU, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSpace(location), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch MMS: content location %q: %w", location, err)
	}
	c.header(req)
	body, err := c.do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch MMS: %w", err)
	}
	p, err := Decode(body)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch MMS: %w", err)
	}
	if p.Type != RetrieveConf {
		return nil, nil, fmt.Errorf("fetch MMS: the MMSC answered a %s, not an m-retrieve-conf", p.Type)
	}
	return p, body, nil
}

// Post encodes p, POSTs it to the MMSC URL and decodes the answer when
// there is one (m-send-conf); an empty 2xx answer gives nil.
func (c *Client) Post(ctx context.Context, p *PDU) (*PDU, error) {
	if c.cfg.MMSC == "" {
		return nil, errors.New("post MMS: network.mms.mmsc is not set: copy the MMSC URL from the carrier's APN settings")
	}
	b, err := Encode(p)
	if err != nil {
		return nil, fmt.Errorf("post %s: %w", p.Type, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.MMSC, bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("post %s: %w", p.Type, err)
	}
	c.header(req)
	req.Header.Set("Content-Type", MediaMMS)
	body, err := c.do(req)
	if err != nil {
		return nil, fmt.Errorf("post %s: %w", p.Type, err)
	}
	if len(body) == 0 {
		return nil, nil
	}
	conf, err := Decode(body)
	if err != nil {
		return nil, fmt.Errorf("post %s: answer: %w", p.Type, err)
	}
	return conf, nil
}

func (c *Client) do(req *http.Request) ([]byte, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return nil, fmt.Errorf("%s: %w", resp.Status, ErrExpired)
	case resp.StatusCode/100 != 2:
		return nil, &HTTPError{Status: resp.Status, Code: resp.StatusCode, Body: string(body[:min(len(body), 200)])}
	case int64(len(body)) > c.cfg.MaxSize:
		return nil, fmt.Errorf("answer is larger than network.mms.max_size (%d bytes)", c.cfg.MaxSize)
	}
	return body, nil
}

// SendError is the MMSC refusing an m-send-req (m-send-conf status other
// than Ok). Reason says it in words for the user.
type SendError struct {
	Status ResponseStatus
	Text   string // X-Mms-Response-Text, if the MMSC gave one
}

func (e *SendError) Error() string {
	s := fmt.Sprintf("the carrier refused the MMS (%s): %s", e.Status, e.Reason())
	if e.Text != "" {
		s += fmt.Sprintf(" (it said %q)", e.Text)
	}
	return s
}

// Temporary reports whether sending again later may work.
func (e *SendError) Temporary() bool { return e.Status.Transient() }

// Reason says what the refusal means for the user.
func (e *SendError) Reason() string {
	switch e.Status {
	case 0x82, 0xE1:
		return "MMS is not allowed on this SIM; ask the carrier to enable picture messages"
	case 0x84, 0xC1, 0xE3:
		return "a recipient's number is not valid"
	case 0x87, 0xE5, 0x88:
		return "the carrier does not accept this content (too large or of a type it refuses)"
	case 0xEB:
		return "the SIM has no credit left"
	case 0x83, 0xE2:
		return "the carrier could not read the message"
	}
	if e.Status.Transient() {
		return "the carrier had a temporary problem; try again later"
	}
	return "the carrier gave no reason"
}

// Send posts an m-send-req and returns the Message-ID of its m-send-conf
// (kept for delivery reports). A refusal is a *SendError.
func (c *Client) Send(ctx context.Context, req *PDU) (string, error) {
	conf, err := c.Post(ctx, req)
	if err != nil {
		return "", err
	}
	if conf == nil || conf.Type != SendConf {
		return "", errors.New("send MMS: the MMSC did not answer with an m-send-conf")
	}
	if conf.ResponseStatus != ResponseOK {
		return "", &SendError{Status: conf.ResponseStatus, Text: conf.ResponseText}
	}
	return conf.MessageID, nil
}
