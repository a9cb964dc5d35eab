// Package mmscfake is a fake MMSC (MMS proxy-relay) on 127.0.0.1 for tests,
// written from OMA-MMS-CTR/ENC: it holds messages and hands out their WAP
// push notifications, serves m-retrieve-conf for the content locations it
// issued, records m-notifyresp-ind / m-acknowledge-ind, answers m-send-req
// with m-send-conf after checking it field by field with its own minimal
// decoder (wire.go), and can refuse sends or expire messages. Safe for
// concurrent use.
package mmscfake

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure the fake.
type Options struct {
	// UserAgent, when set, is required: other requests get 412 Precondition
	// Failed (what AT&T answers to an empty User-Agent).
	UserAgent string
	// Host, when set, is the carrier-internal host name of the content
	// locations ("http://<Host>/mms/<id>"); the fake is then reachable only
	// as an HTTP proxy (absolute-form request line).
	Host string
}

// Media is one attachment of a held message.
type Media struct {
	Type string // "image/jpeg", "text/x-vCard", ...
	Name string
	Data []byte
}

// Message is what the fake holds for a recipient.
type Message struct {
	From    string   // "+15551230001"
	To, Cc  []string // numbers; the recipient's own number among them
	Subject string
	Text    string // a text/plain part when not empty
	Media   []Media
	Expiry  time.Duration // relative expiry in the notification; 0 = 72 h
}

// NotifyResp is a recorded m-notifyresp-ind or m-acknowledge-ind.
type NotifyResp struct {
	Type          byte // 0x83 notifyresp, 0x85 acknowledge
	TransactionID string
	Status        byte // X-Mms-Status (notifyresp)
}

// SendReq is a recorded, checked m-send-req.
type SendReq struct {
	TransactionID string
	To            []string // as on the wire, "/TYPE=PLMN" kept
	Subject       string
	Parts         []SentPart
	Raw           []byte
}

// SentPart is one part of a SendReq.
type SentPart struct {
	Headers []byte // the part's content type and headers, raw
	Data    []byte
}

// Server is a running fake MMSC.
type Server struct {
	opts Options
	srv  *httptest.Server

	mu        sync.Mutex
	next      int
	held      map[string]*held // by id
	resps     []NotifyResp
	sends     []SendReq
	problems  []string
	fetches   map[string]int
	proxied   int
	refuse    byte
	posts     int // m-send-req received, accepted or refused
	refText   string
	abandoned int           // stalled GETs whose client gave up
	stall     chan struct{} // non-nil: GETs wait until it is closed
	getsSeen  int
}

type held struct {
	msg     Message
	tid     string
	expired bool
}

// Start starts the fake on 127.0.0.1.
func Start(opts Options) *Server {
	s := &Server{opts: opts, held: map[string]*held{}, fetches: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Addr is "127.0.0.1:port", the proxy address in Host mode.
func (s *Server) Addr() string { return strings.TrimPrefix(s.srv.URL, "http://") }

// URL is the MMSC URL clients POST to.
func (s *Server) URL() string { return s.base() + "/mmsc" }

func (s *Server) base() string {
	if s.opts.Host != "" {
		return "http://" + s.opts.Host
	}
	return s.srv.URL
}

// Hold stores m and returns the WSP push (to deliver with
// modemsim.DeliverWAPPush) carrying its m-notification-ind, and the
// content location it names.
func (s *Server) Hold(m Message) (push []byte, location string) {
	s.mu.Lock()
	s.next++
	id := fmt.Sprintf("m%04d", s.next)
	h := &held{msg: m, tid: "tid-" + id}
	s.held[id] = h
	s.mu.Unlock()
	location = s.base() + "/mms/" + id
	exp := m.Expiry
	if exp == 0 {
		exp = 72 * time.Hour
	}
	var b builder
	b.octet(0x8C, 0x82)
	b.str(0x98, h.tid)
	b.octet(0x8D, 0x92)
	b.lenPrefixed(0x89, append(append([]byte{0x80}, m.From+"/TYPE=PLMN"...), 0))
	if m.Subject != "" {
		b.str(0x96, m.Subject)
	}
	b.octet(0x8A, 0x80)
	b.long(0x8E, uint64(len(s.retrieveConf(id, h))))
	var e builder
	e.long(0x81, uint64(exp/time.Second))
	b.lenPrefixed(0x88, e)
	b.str(0x83, location)
	// WSP push: TID, Push, HeadersLen, text content type, X-Wap-Application-Id mms.ua.
	hdr := append([]byte("application/vnd.wap.mms-message\x00"), 0xAF, 0x84)
	push = append([]byte{byte(s.next), 0x06}, appendUvar(nil, len(hdr))...)
	push = append(push, hdr...)
	return append(push, b...), location
}

// Content returns the bytes the fake serves for attachment i of the
// message at location (what a test compares the Matrix download with).
func (s *Server) Content(location string, i int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held[idOf(location)].msg.Media[i].Data
}

func idOf(location string) string { return location[strings.LastIndexByte(location, '/')+1:] }

// Expire makes the message at location answer 404 from now on.
func (s *Server) Expire(location string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.held[idOf(location)]; h != nil {
		h.expired = true
	}
}

// Refuse makes every following m-send-req get Response-Status status with
// text (0 = accept again).
func (s *Server) Refuse(status byte, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse, s.refText = status, text
}

// Fetches is how often the message at location was served.
func (s *Server) Fetches(location string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches[idOf(location)]
}

// NotifyResps returns the recorded notify responses and acknowledgements.
func (s *Server) NotifyResps() []NotifyResp {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]NotifyResp(nil), s.resps...)
}

// SendReqs returns the accepted m-send-req.
func (s *Server) SendReqs() []SendReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SendReq(nil), s.sends...)
}

// SendPosts counts every well-formed m-send-req received, refused ones
// included.
func (s *Server) SendPosts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.posts
}

// Problems lists every request the fake found wrong (bad user agent,
// content type, or PDU field), in words; a test asserts it is empty.
func (s *Server) Problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.problems...)
}

// Proxied counts requests that came in proxy form (absolute URI).
func (s *Server) Proxied() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proxied
}

func (s *Server) problem(w http.ResponseWriter, code int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.problems = append(s.problems, msg)
	s.mu.Unlock()
	http.Error(w, msg, code)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	abs := strings.HasPrefix(r.RequestURI, "http://")
	if abs {
		s.mu.Lock()
		s.proxied++
		s.mu.Unlock()
	}
	switch {
	case s.opts.Host != "" && (!abs || r.URL.Host != s.opts.Host):
		s.problem(w, http.StatusBadGateway, "request %s %s did not go through the proxy to %s", r.Method, r.RequestURI, s.opts.Host)
	case s.opts.UserAgent != "" && r.UserAgent() != s.opts.UserAgent:
		s.problem(w, http.StatusPreconditionFailed, "user agent %q, want %q", r.UserAgent(), s.opts.UserAgent)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/mms/"):
		s.get(w, r, idOf(r.URL.Path))
	case r.Method == http.MethodPost && r.URL.Path == "/mmsc":
		s.post(w, r)
	default:
		s.problem(w, http.StatusNotFound, "no route for %s %s", r.Method, r.URL.Path)
	}
}

// Stall makes GETs hang (on) until Stall(false); a GET whose client gave
// up meanwhile is not served and not counted in Fetches.
func (s *Server) Stall(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case on && s.stall == nil:
		s.stall = make(chan struct{})
	case !on && s.stall != nil:
		close(s.stall)
		s.stall = nil
	}
}

// Abandoned counts stalled GETs whose client gave up (closed the
// connection) before Stall(false).
func (s *Server) Abandoned() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.abandoned
}

// GetsSeen counts GET requests that arrived, served or not.
func (s *Server) GetsSeen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.getsSeen
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	s.getsSeen++
	stall := s.stall
	s.mu.Unlock()
	if stall != nil {
		select {
		case <-stall:
		case <-r.Context().Done():
		}
		if r.Context().Err() != nil {
			s.mu.Lock()
			s.abandoned++
			s.mu.Unlock()
			return
		}
	}
	s.mu.Lock()
	h := s.held[id]
	if h == nil || h.expired {
		s.mu.Unlock()
		http.Error(w, "message not found or expired", http.StatusNotFound)
		return
	}
	s.fetches[id]++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/vnd.wap.mms-message")
	_, _ = w.Write(s.retrieveConf(id, h))
}

func (s *Server) post(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "application/vnd.wap.mms-message" {
		s.problem(w, http.StatusUnsupportedMediaType, "POST content type %q, want application/vnd.wap.mms-message", ct)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		s.problem(w, http.StatusBadRequest, "read body: %v", err)
		return
	}
	p, err := split(body)
	if err != nil {
		s.problem(w, http.StatusBadRequest, "undecodable PDU %X: %v", body, err)
		return
	}
	switch t := p.headers[0].val[0]; t {
	case 0x83, 0x85:
		s.notifyResp(w, t, p)
	case 0x80:
		s.sendReq(w, p, body)
	default:
		s.problem(w, http.StatusBadRequest, "message type 0x%02X is not one a client posts", t)
	}
}

func (s *Server) notifyResp(w http.ResponseWriter, t byte, p *parsed) {
	tid := text(p.one(0x98))
	var status byte
	if v := p.one(0x95); len(v) == 1 {
		status = v[0]
	}
	switch {
	case p.one(0x8D) == nil:
		s.problem(w, http.StatusBadRequest, "notify response %q without X-Mms-MMS-Version", tid)
		return
	case t == 0x83 && (status < 0x80 || status > 0x84):
		s.problem(w, http.StatusBadRequest, "notify response %q has X-Mms-Status %X, want 0x80-0x84", tid, p.one(0x95))
		return
	case !s.knownTID(tid):
		s.problem(w, http.StatusBadRequest, "notify response for unknown transaction %q", tid)
		return
	}
	s.mu.Lock()
	s.resps = append(s.resps, NotifyResp{Type: t, TransactionID: tid, Status: status})
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (s *Server) knownTID(tid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.held {
		if h.tid == tid {
			return true
		}
	}
	return false
}

func (s *Server) sendReq(w http.ResponseWriter, p *parsed, raw []byte) {
	req := SendReq{TransactionID: text(p.one(0x98)), Subject: text(p.one(0x96)), Raw: raw}
	for _, v := range p.all(0x97) {
		req.To = append(req.To, text(v))
	}
	if msg := checkSendReq(p, &req); msg != "" {
		s.problem(w, http.StatusOK, "m-send-req %q: %s", req.TransactionID, msg)
		return
	}
	s.mu.Lock()
	s.posts++
	status, stext := s.refuse, s.refText
	if status == 0 {
		s.sends = append(s.sends, req)
	}
	n := len(s.sends)
	s.mu.Unlock()
	var b builder
	b.octet(0x8C, 0x81)
	b.str(0x98, req.TransactionID)
	b.octet(0x8D, 0x92)
	if status != 0 {
		b.octet(0x92, status)
		if stext != "" {
			b.str(0x93, stext)
		}
	} else {
		b.octet(0x92, 0x80)
		b.str(0x8B, MessageID(n))
	}
	w.Header().Set("Content-Type", "application/vnd.wap.mms-message")
	_, _ = w.Write(b)
}

// checkSendReq checks the fields OMA-MMS-ENC makes mandatory in an
// m-send-req and decodes its multipart body; "" means fine.
func checkSendReq(p *parsed, req *SendReq) string {
	from := p.one(0x89)
	switch {
	case req.TransactionID == "":
		return "no X-Mms-Transaction-Id"
	case p.headers[2].code != 0x8D && p.headers[1].code != 0x8D:
		return "X-Mms-MMS-Version is not among the first three headers"
	case len(from) != 2 || from[0] != 1 || from[1] != 0x81:
		return fmt.Sprintf("From is %X, want the insert-address token 01 81", from)
	case len(req.To) == 0:
		return "no To"
	case p.one(0x84) == nil:
		return "no Content-Type (it must be the last header)"
	}
	for _, to := range req.To {
		if !strings.HasSuffix(to, "/TYPE=PLMN") || !strings.HasPrefix(to, "+") {
			return fmt.Sprintf("To %q is not +E.164/TYPE=PLMN", to)
		}
	}
	parts, err := multipart(p.body)
	if err != nil {
		return "multipart body: " + err.Error()
	}
	if len(parts) == 0 {
		return "empty multipart body"
	}
	for _, rp := range parts {
		req.Parts = append(req.Parts, SentPart{Headers: rp.headers, Data: rp.data})
	}
	return ""
}

// DeliveryPush returns the WSP push of an m-delivery-ind for a message the
// fake accepted (its Message-ID from the m-send-conf): to has it, with
// X-Mms-Status status (0x81 retrieved).
func (s *Server) DeliveryPush(messageID, to string, status byte) []byte {
	var b builder
	b.octet(0x8C, 0x86)
	b.octet(0x8D, 0x92)
	b.str(0x8B, messageID)
	b.str(0x97, to+"/TYPE=PLMN")
	b.long(0x85, uint64(time.Now().Unix()))
	b.octet(0x95, status)
	hdr := append([]byte("application/vnd.wap.mms-message\x00"), 0xAF, 0x84)
	push := append([]byte{0x42, 0x06}, appendUvar(nil, len(hdr))...)
	push = append(push, hdr...)
	return append(push, b...)
}

// MessageID is the Message-ID the fake gave the n-th accepted send (1-based).
func MessageID(n int) string { return "msgid-" + strconv.Itoa(n) }
