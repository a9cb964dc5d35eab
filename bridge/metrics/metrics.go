// Package metrics is bubbled's observability: one Prometheus registry (never
// the global default one) with the families below, and the handler of the
// metrics listener: /metrics, /healthz, /readyz and, when asked for,
// /debug/pprof/. The pure packages know nothing of it: they offer hooks
// (sms.Config.OnStateChange, rcs.WebhookConfig.OnReject,
// directory.RouterAdapter.WithObserver), and bridge/ wires those hooks to a
// *Metrics. Gauges that describe state (queue depth, oldest message, line
// state, signal, registration, journal backlog) are read at scrape time from
// Sources, so they are never stale and cost nothing between scrapes.
package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Directions of a message.
const (
	// In is a message from the phone network (SMS, RCS) to Matrix.
	In = "in"
	// Out is a message from Matrix to a contact.
	Out = "out"
)

// Metrics holds bubbled's metric families. Create it with New. All methods
// are safe for concurrent use, and are no-ops on a nil *Metrics, so code
// paths without a metrics listener need no checks.
type Metrics struct {
	reg        *prometheus.Registry
	messages   *prometheus.CounterVec
	parts      *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	recovery   *prometheus.CounterVec
	directory  *prometheus.CounterVec
	rejections *prometheus.CounterVec
	src        *sourceCollector
}

// New returns a Metrics with its own registry, holding bubbled's families
// and Go's runtime and process collectors. Sources are set later with
// SetSources (they usually exist only once the bridge runs).
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bubbled_messages_total",
			Help: "Messages by direction (in, out), route (sms, rcs, matrix, none) and result (out: accepted, refused, sent, delivered, failed, unknown; in: bridged, retried).",
		}, []string{"direction", "route", "result"}),
		parts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bubbled_sms_parts_total",
			Help: "SMS parts by direction: sent parts the modem accepted, received parts of bridged messages.",
		}, []string{"direction", "line"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bubbled_send_latency_seconds",
			Help:    "Time from the Matrix event to the modem accepting every part of the SMS, by route.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800},
		}, []string{"route"}),
		recovery: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bubbled_modem_recovery_steps_total",
			Help: "Rungs of the modem recovery ladder tried, by line and step.",
		}, []string{"line", "step"}),
		directory: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bubbled_directory_lookups_total",
			Help: "Directory lookups by source (local, static, identity_server, none) and cache (hit, miss, error).",
		}, []string{"source", "cache"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bubbled_webhook_rejections_total",
			Help: "Webhook requests refused before they were stored, by source (rbm, maap, ...) and HTTP status.",
		}, []string{"source", "status"}),
		src: &sourceCollector{},
	}
	m.reg.MustRegister(m.messages, m.parts, m.latency, m.recovery, m.directory, m.rejections, m.src,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry, for tests and for other packages that add
// their own families.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Message counts one message by direction (In, Out), route and result.
func (m *Metrics) Message(direction, route, result string) {
	if m == nil {
		return
	}
	m.messages.WithLabelValues(direction, route, result).Inc()
}

// Parts counts n SMS parts of a line in a direction.
func (m *Metrics) Parts(direction, line string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.parts.WithLabelValues(direction, line).Add(float64(n))
}

// SendLatency observes the time from a Matrix event to its message leaving
// by route. Negative durations (clock skew between homeserver and bridge)
// are counted as 0.
func (m *Metrics) SendLatency(route string, d time.Duration) {
	if m == nil {
		return
	}
	m.latency.WithLabelValues(route).Observe(max(d, 0).Seconds())
}

// Recovery counts one rung of the recovery ladder tried on a line.
func (m *Metrics) Recovery(line, step string) {
	if m == nil {
		return
	}
	m.recovery.WithLabelValues(line, step).Inc()
}

// DirectoryLookup counts one directory answer: its source, and whether it
// came from the cache (hit), was asked now (miss) or failed (error).
func (m *Metrics) DirectoryLookup(source, cache string) {
	if m == nil {
		return
	}
	if source == "" {
		source = "none"
	}
	m.directory.WithLabelValues(source, cache).Inc()
}

// WebhookRejected counts one refused webhook request.
func (m *Metrics) WebhookRejected(source string, status int) {
	if m == nil {
		return
	}
	m.rejections.WithLabelValues(source, statusLabel(status)).Inc()
}

// SetSources sets where the state gauges and readiness come from. Fields
// left nil are left out of /metrics and /readyz.
func (m *Metrics) SetSources(s Sources) {
	if m == nil {
		return
	}
	m.src.set(s)
}

// Sources are read at scrape time (gauges) and at each /readyz.
type Sources struct {
	// Lines lists the phone lines with their state. Required for /readyz
	// to check lines.
	Lines func(ctx context.Context) []LineState
	// JournalBacklog counts the Matrix events received but not handled.
	JournalBacklog func(ctx context.Context) (int, error)
	// Homeserver returns nil when the homeserver answers.
	Homeserver func(ctx context.Context) error
	// Started reports whether the bridge finished starting.
	Started func() bool
}

// LineState is one line as /metrics and /readyz see it.
type LineState struct {
	// ID is the line's modem ID (network.modems[].id); never a number.
	ID string
	// State is the line's connection state (ready, disconnected, ...).
	State string
	// Ready is true when the line can send and receive now.
	Ready bool
	// Problem says why the line is not ready, for /readyz.
	Problem string
	// QueueLength counts outbound messages not sent yet; -1 when unknown.
	QueueLength int
	// OldestQueued is the age of the oldest queued message (0 when none).
	OldestQueued time.Duration
	// HaveRadio is true when Registered, SignalDBm and RSSI are known.
	HaveRadio bool
	// Registered is true when the modem is registered (home or roaming).
	Registered bool
	// SignalDBm is the received signal strength; 0 when unknown.
	SignalDBm int
	// RSSI is the +CSQ value 0-31, 99 when unknown.
	RSSI int
}
