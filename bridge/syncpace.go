package bridge

import (
	"net/http"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/bridgev2/matrix"
)

// SyncGap is the least time between two /sync requests of one filter from
// the appservice's clients (PaceSyncs).
const SyncGap = 200 * time.Millisecond

// PaceSyncs spaces the /sync requests of the bridge bot (mautrix's crypto
// syncer, which brings room keys on homeservers without MSC2409, and
// bridge/receiptsync) at least gap apart per filter. Dendrite answers a
// filtered long-poll at every new event in any of the bot's rooms, with
// nothing left after the filter, so without pacing each bridged message
// cost a /sync round trip, its JSON and a sync-token write (about a tenth
// of bubbled's CPU per outbound message). What waits for a sync (a room
// key, a read receipt) comes at most gap later. Call it once, after
// bridgev2.NewBridge (which creates the appservice) and before the bridge
// starts.
func PaceSyncs(mx *matrix.Connector, gap time.Duration) {
	cli := mx.AS.HTTPClient
	next := cli.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	cli.Transport = newSyncPacer(next, gap)
}

// syncPacer is the http.RoundTripper of PaceSyncs.
type syncPacer struct {
	next  http.RoundTripper
	gap   time.Duration
	mu    sync.Mutex
	since map[string]time.Time // filter → when its last /sync goes
}

func newSyncPacer(next http.RoundTripper, gap time.Duration) *syncPacer {
	return &syncPacer{next: next, gap: gap, since: map[string]time.Time{}}
}

// sleepFor waits d or until r's context ends.
func sleepFor(r *http.Request, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.Context().Done():
		return r.Context().Err()
	}
}

func (p *syncPacer) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/sync") {
		return p.next.RoundTrip(r)
	}
	filter := r.URL.Query().Get("filter")
	p.mu.Lock()
	now := time.Now()
	at := p.since[filter].Add(p.gap)
	if at.Before(now) {
		at = now
	}
	p.since[filter] = at // the next one waits a gap after this one
	p.mu.Unlock()
	if wait := time.Until(at); wait > 0 {
		if err := sleepFor(r, wait); err != nil {
			return nil, err
		}
	}
	return p.next.RoundTrip(r)
}
