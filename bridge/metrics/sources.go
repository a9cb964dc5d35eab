package metrics

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// scrapeTimeout bounds what one scrape or /readyz may spend on Sources (a
// database count, a homeserver request, modem status from a cache).
const scrapeTimeout = 5 * time.Second

var (
	descQueue = prometheus.NewDesc("bubbled_queue_depth",
		"Outbound SMS stored in a line's outbox and not sent yet.", []string{"line"}, nil)
	descOldest = prometheus.NewDesc("bubbled_queue_oldest_age_seconds",
		"Age of the oldest queued outbound SMS of a line; 0 when the queue is empty.", []string{"line"}, nil)
	descReady = prometheus.NewDesc("bubbled_line_ready",
		"1 when the line's modem is ready, 0 otherwise; the state label names the state.", []string{"line", "state"}, nil)
	descRegistered = prometheus.NewDesc("bubbled_modem_registered",
		"1 when the modem is registered on a network (home or roaming).", []string{"line"}, nil)
	descSignal = prometheus.NewDesc("bubbled_modem_signal_dbm",
		"Received signal strength of the modem in dBm (from +CSQ); absent when unknown.", []string{"line"}, nil)
	descBacklog = prometheus.NewDesc("bubbled_journal_backlog",
		"Matrix events journaled but not handled yet.", nil, nil)
)

// sourceCollector turns Sources into gauges at scrape time.
type sourceCollector struct {
	mu  sync.Mutex // guards src
	src Sources
}

func (c *sourceCollector) set(s Sources) {
	c.mu.Lock()
	c.src = s
	c.mu.Unlock()
}

func (c *sourceCollector) get() Sources {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.src
}

// Describe implements prometheus.Collector.
func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueue, descOldest, descReady, descRegistered, descSignal, descBacklog} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.get()
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	if src.Lines != nil {
		for _, l := range src.Lines(ctx) {
			collectLine(ch, l)
		}
	}
	if src.JournalBacklog != nil {
		if n, err := src.JournalBacklog(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(n))
		} else {
			ch <- prometheus.NewInvalidMetric(descBacklog, err)
		}
	}
}

func collectLine(ch chan<- prometheus.Metric, l LineState) {
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, b2f(l.Ready), l.ID, l.State)
	if l.QueueLength >= 0 {
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(l.QueueLength), l.ID)
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, l.OldestQueued.Seconds(), l.ID)
	}
	if l.HaveRadio {
		ch <- prometheus.MustNewConstMetric(descRegistered, prometheus.GaugeValue, b2f(l.Registered), l.ID)
		if l.SignalDBm != 0 {
			ch <- prometheus.MustNewConstMetric(descSignal, prometheus.GaugeValue, float64(l.SignalDBm), l.ID)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func statusLabel(status int) string { return strconv.Itoa(status) }
