package api

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// alertmanager.go is Prometheus Alertmanager's webhook receiver: one SMS
// per notification, for firing and for resolved alerts. Alertmanager
// posts its documented JSON (version "4") to the webhook_config url,
// here /api/v1/alertmanager?to=<number>[&to=<number>][&line=<number>],
// with the token in http_config.authorization.credentials.

// AlertmanagerPayload is the body Alertmanager's webhook_config posts.
type AlertmanagerPayload struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []Alert           `json:"alerts"`
}

// Alert is one alert of an AlertmanagerPayload.
type Alert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     string            `json:"startsAt"`
	EndsAt       string            `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// alertSMSMax bounds the text of one notification (three GSM 7-bit parts).
const alertSMSMax = 450

// alertLines is how many alerts a notification lists by name.
const alertLines = 5

func (s *Server) postAlertmanager(w http.ResponseWriter, r *http.Request, tok *Token) {
	var p AlertmanagerPayload
	if herr := s.readJSONLenient(w, r, &p); herr != nil {
		writeHTTPError(w, herr)
		return
	}
	if p.Status != "firing" && p.Status != "resolved" {
		writeError(w, http.StatusUnprocessableEntity, "M_INVALID_PARAM", fmt.Sprintf("status %q is not firing or resolved; is this an Alertmanager webhook (version 4)?", p.Status))
		return
	}
	q := r.URL.Query()
	tos := q["to"]
	if len(tos) == 0 {
		writeError(w, http.StatusUnprocessableEntity, "M_INVALID_PARAM", "no recipient: add ?to=<number> to the webhook URL")
		return
	}
	text := FormatAlert(&p)
	msgs := make([]*Message, 0, len(tos))
	for _, to := range tos {
		if strings.HasPrefix(to, " ") {
			// An unescaped "+" in a query string reads as a space.
			to = "+" + strings.TrimSpace(to)
		}
		m, herr := s.check(tok, SendRequest{To: to, Text: text, Line: q.Get("line"), Route: q.Get("route")})
		if herr != nil {
			writeHTTPError(w, herr)
			return
		}
		m.IdempotencyKey, m.dupKeys = alertKeys(&p, m.To, s.cfg.Clock.Now())
		msgs = append(msgs, m)
	}
	ids := make([]string, 0, len(msgs))
	for _, m := range msgs {
		stored, _, herr := s.store(r.Context(), tok, m)
		if herr != nil {
			writeHTTPError(w, herr)
			return
		}
		ids = append(ids, stored.ID)
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"ids": ids, "status": StatusQueued})
}

// alertRetryWindow is how long a notification posted again unchanged is
// taken for Alertmanager retrying it (after a timeout or a lost answer),
// not for a new notification: Alertmanager retries within its
// group_interval (default 5 m), and repeats an unchanged notification only
// after repeat_interval (default 4 h).
const alertRetryWindow = 15 * time.Minute

// alertKeys derives the idempotency key of a notification to one
// recipient: the same group, status and alerts (fingerprint, status and
// times) in the same window are the same notification. It also returns the
// previous window's key, so a retry across a window boundary is one message
// too (a repeat is then taken as one within 15 to 30 minutes).
func alertKeys(p *AlertmanagerPayload, to string, now time.Time) (string, []string) {
	alerts := make([]string, 0, len(p.Alerts))
	for _, a := range p.Alerts {
		alerts = append(alerts, strings.Join([]string{a.Fingerprint, a.Status, a.StartsAt, a.EndsAt}, "|"))
	}
	sort.Strings(alerts)
	h := sha256.New()
	for _, part := range append([]string{p.Receiver, p.GroupKey, p.Status, to}, alerts...) {
		fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	sum := hex.EncodeToString(h.Sum(nil))[:32]
	window := now.Unix() / int64(alertRetryWindow/time.Second)
	key := func(w int64) string { return fmt.Sprintf("alertmanager:%s:%d", sum, w) }
	return key(window), []string{key(window - 1)}
}

// readJSONLenient is readJSON for payloads of other programs, whose newer
// versions may add fields.
func (s *Server) readJSONLenient(w http.ResponseWriter, r *http.Request, out any) *httpError {
	return s.decode(w, r, out, false)
}

// FormatAlert renders a notification as one readable SMS, e.g.
//
//	[FIRING:2] DiskFull
//	severity=critical
//	- db-1: Disk /var is 97% full
//	- db-2: Disk /var is 95% full
//
// It lists up to five alerts of the notification's status (the others are
// counted), then how many of the group are in the other state, and stays
// within three SMS parts.
func FormatAlert(p *AlertmanagerPayload) string {
	var same, other []Alert
	for _, a := range p.Alerts {
		if a.Status == p.Status || a.Status == "" {
			same = append(same, a)
		} else {
			other = append(other, a)
		}
	}
	name := first(p.GroupLabels["alertname"], p.CommonLabels["alertname"])
	if name == "" && len(same) > 0 {
		name = same[0].Labels["alertname"]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%s:%d] %s", strings.ToUpper(p.Status), len(same)+p.TruncatedAlerts, first(name, "alerts"))
	if extra := groupLabelText(p); extra != "" {
		b.WriteString(" " + extra)
	}
	common := first(p.CommonAnnotations["summary"], p.CommonAnnotations["description"])
	if common != "" {
		b.WriteString("\n" + common)
	}
	if sev := p.CommonLabels["severity"]; sev != "" {
		b.WriteString("\nseverity=" + sev)
	}
	for i, a := range same {
		if i == alertLines {
			fmt.Fprintf(&b, "\n... and %d more", len(same)-alertLines+p.TruncatedAlerts)
			break
		}
		b.WriteString("\n- " + alertLine(a, common, name))
	}
	if len(other) > 0 {
		fmt.Fprintf(&b, "\n(%d %s)", len(other), other[0].Status)
	}
	return clip(b.String(), alertSMSMax)
}

// groupLabelText is the group labels other than alertname, "(k=v, ...)".
func groupLabelText(p *AlertmanagerPayload) string {
	var kv []string
	for k, v := range p.GroupLabels {
		if k != "alertname" {
			kv = append(kv, k+"="+v)
		}
	}
	if len(kv) == 0 {
		return ""
	}
	sort.Strings(kv)
	return "(" + strings.Join(kv, ", ") + ")"
}

// alertLine names one alert: where ("instance", else "host", "pod",
// "job") and what (its summary, unless every alert shares it).
func alertLine(a Alert, common, group string) string {
	where := first(a.Labels["instance"], a.Labels["host"], a.Labels["pod"], a.Labels["job"])
	what := first(a.Annotations["summary"], a.Annotations["description"])
	if what == common {
		what = ""
	}
	if n := a.Labels["alertname"]; what == "" && n != group {
		what = n
	}
	switch {
	case where != "" && what != "":
		return where + ": " + what
	case where != "":
		return where
	case what != "":
		return what
	}
	return first(a.Labels["alertname"], a.Fingerprint)
}

func first(vals ...string) string {
	for _, v := range vals {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}

// clip cuts s to n characters, marking the cut with "...".
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-3]) + "..."
}
