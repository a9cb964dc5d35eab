package directory

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/fallback"
)

// Defaults for Config.
const (
	DefaultFoundTTL    = 24 * time.Hour
	DefaultNotFoundTTL = time.Hour
	DefaultErrorTTL    = time.Minute
	DefaultTimeout     = 10 * time.Second
	DefaultMaxEntries  = 100_000
)

// Config is the directory section of the bridge config. Zero durations and sizes mean the
// defaults.
type Config struct {
	// DefaultRegion is the ISO 3166 region (e.g. "US") in which numbers written in national
	// form are read, both in Static and in lookups; "" accepts international numbers only.
	// The bridge passes network.default_region.
	DefaultRegion string
	// Static maps phone numbers to Matrix user IDs (directory.static). New refuses entries
	// that are not phone numbers or not full Matrix user IDs, naming them.
	Static map[string]string
	// IdentityServer configures the identity-server source; an empty URL turns it off.
	IdentityServer IdentityServerConfig
	// FoundTTL is how long an identity server's "bound to @x:y" answer is reused
	// (directory.found_ttl); default 24 h.
	FoundTTL time.Duration
	// NotFoundTTL is how long an identity server's "not bound" answer is reused
	// (directory.not_found_ttl); default 1 h.
	NotFoundTTL time.Duration
	// ErrorTTL is how long a failed identity-server lookup is reused before the server is
	// asked again (directory.error_ttl); default 1 minute. During it Lookup returns the same
	// error with FromCache set.
	ErrorTTL time.Duration
	// MaxEntries bounds the cache; when it is full, expired answers are dropped first, then
	// the ones closest to expiry. Default 100000.
	MaxEntries int
}

// IdentityServerConfig is directory.identity_server.
type IdentityServerConfig struct {
	// URL is the identity server's base URL, e.g. "https://vector.im"; "" turns the source
	// off. Paths under /_matrix/identity/v2 are appended.
	URL string
	// AcceptedTerms lists the policy URLs (from GET /_matrix/identity/v2/terms) the operator
	// has read and accepts. The directory signs a server's terms only when every policy has
	// one of its URLs here; otherwise lookups fail with ErrTermsNotAccepted naming the URLs.
	AcceptedTerms []string
	// Timeout bounds each HTTP request to the identity server; default 10 s.
	Timeout time.Duration
}

// Options are the Directory's collaborators.
type Options struct {
	// Log receives the directory's few log lines (registration, terms, pepper refresh, and
	// debug counts); numbers, hashes and tokens never appear. nil means no logging.
	Log *zap.Logger
	// Clock is the time source for the cache (only its Now is used); nil means
	// fallback.SystemClock. It must be safe for concurrent use.
	Clock fallback.Clock
	// OpenID issues homeserver OpenID tokens for the identity server; required when
	// Config.IdentityServer.URL is set.
	OpenID OpenIDTokenSource
	// HTTPClient talks to the identity server; nil means a client with default transport.
	// Timeouts come from Config.IdentityServer.Timeout and the caller's ctx.
	HTTPClient *http.Client
}

// Source says which source answered a lookup.
type Source string

// Sources, in the order the directory consults them.
const (
	// SourceNone means no source knows the number and no identity server is configured.
	SourceNone           Source = ""
	SourceLocal          Source = "local"
	SourceStatic         Source = "static"
	SourceIdentityServer Source = "identity_server"
)

// Result is the answer to "is this number on Matrix?".
type Result struct {
	// MXID is the Matrix user the number belongs to; "" when not found (or on error).
	MXID id.UserID
	// Source is where the answer came from.
	Source Source
	// Fetched is when the answer was obtained: the identity server's answer time, the time
	// SetLocal was last called for local answers, New's time for static ones.
	Fetched time.Time
	// FromCache is true when the answer was reused from the cache instead of asking the
	// identity server now.
	FromCache bool
}

// Found reports whether the number is on Matrix.
func (r Result) Found() bool { return r.MXID != "" }

// BatchResult is one answer of LookupMany.
type BatchResult struct {
	Result
	// Err is non-nil when this number could not be looked up (see Lookup).
	Err error
}

// entry is one cached identity-server answer.
type entry struct {
	mxid    id.UserID
	err     error // non-nil for a cached failure
	fetched time.Time
	expires time.Time
}

// call is one identity-server lookup in flight; others asking for the same number wait.
type call struct {
	done     chan struct{} // closed when res and err are set
	res      Result
	err      error
	canceled bool // the leader's ctx ended: waiters ask again instead of sharing that
}

// Directory answers lookups from the local lines, the static table and the identity server,
// with a cache. All methods are safe for concurrent use; it starts no goroutines. A lookup
// that must ask the identity server runs in the caller's goroutine, bounded by its ctx;
// concurrent lookups of the same number share one request.
type Directory struct {
	region     string
	static     map[string]id.UserID // immutable after New
	createdAt  time.Time
	is         *identityClient // nil when no identity server is configured
	clock      fallback.Clock
	log        *zap.Logger
	foundTTL   time.Duration
	missTTL    time.Duration
	errTTL     time.Duration
	maxEntries int

	mu       sync.RWMutex
	local    map[string]id.UserID // guarded by mu; replaced wholesale by SetLocal
	localAt  time.Time            // guarded by mu
	cache    map[string]entry     // guarded by mu; keyed by E.164
	inflight map[string]*call     // guarded by mu
}

// New validates cfg and returns a Directory. It does no I/O: the identity server is first
// contacted by the first lookup that needs it. Errors name the config key and say what to
// write.
func New(cfg Config, opts Options) (*Directory, error) {
	d := &Directory{
		region:     strings.ToUpper(strings.TrimSpace(cfg.DefaultRegion)),
		clock:      opts.Clock,
		log:        opts.Log,
		foundTTL:   cfg.FoundTTL,
		missTTL:    cfg.NotFoundTTL,
		errTTL:     cfg.ErrorTTL,
		maxEntries: cfg.MaxEntries,
		local:      map[string]id.UserID{},
		cache:      map[string]entry{},
		inflight:   map[string]*call{},
	}
	if d.clock == nil {
		d.clock = fallback.SystemClock{}
	}
	if d.log == nil {
		d.log = zap.NewNop()
	}
	var errs []error
	if d.region != "" && !phone.KnownRegion(d.region) {
		errs = append(errs, fmt.Errorf("network.default_region: %q is not a region known to the phone number library; write a two-letter ISO 3166 code such as US, GB or DE", cfg.DefaultRegion))
	}
	for _, ttl := range []struct {
		key string
		v   *time.Duration
		def time.Duration
	}{
		{"directory.found_ttl", &d.foundTTL, DefaultFoundTTL},
		{"directory.not_found_ttl", &d.missTTL, DefaultNotFoundTTL},
		{"directory.error_ttl", &d.errTTL, DefaultErrorTTL},
		{"directory.identity_server.timeout", &cfg.IdentityServer.Timeout, DefaultTimeout},
	} {
		switch {
		case *ttl.v < 0:
			errs = append(errs, fmt.Errorf("%s: %s is negative; write a duration such as %s, or remove the key for the default", ttl.key, *ttl.v, ttl.def))
		case *ttl.v == 0:
			*ttl.v = ttl.def
		}
	}
	switch {
	case d.maxEntries < 0:
		errs = append(errs, fmt.Errorf("directory.max_entries: %d is negative; write a positive number, or remove the key for the default %d", d.maxEntries, DefaultMaxEntries))
	case d.maxEntries == 0:
		d.maxEntries = DefaultMaxEntries
	}
	if len(errs) == 0 {
		static, err := buildTable("directory.static", cfg.Static, d.region)
		if err != nil {
			errs = append(errs, err)
		}
		d.static = static
	}
	if cfg.IdentityServer.URL != "" {
		is, err := newIdentityClient(cfg.IdentityServer, opts, d.log)
		if err != nil {
			errs = append(errs, err)
		}
		d.is = is
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	d.createdAt = d.clock.Now()
	d.localAt = d.createdAt
	return d, nil
}

func newIdentityClient(cfg IdentityServerConfig, opts Options, log *zap.Logger) (*identityClient, error) {
	u, err := url.Parse(strings.TrimSpace(cfg.URL))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%s: %q is not an http(s) URL; write the identity server's base URL such as https://vector.im, or remove the key to turn the identity server off", urlKey, cfg.URL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%s: the URL contains a user name or password; write it without them (the directory authenticates with OpenID)", urlKey)
	}
	if strings.Contains(u.Path, "/_matrix/") {
		return nil, fmt.Errorf("%s: %q includes an API path; write only the base URL, e.g. %s://%s", urlKey, cfg.URL, u.Scheme, u.Host)
	}
	if opts.OpenID == nil {
		return nil, fmt.Errorf("directory: %s is set but no OpenID token source was given (Options.OpenID); this is a bug in the bridge", urlKey)
	}
	accepted := map[string]bool{}
	for i, a := range cfg.AcceptedTerms {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, fmt.Errorf("%s[%d]: is empty; write the URL of a policy you accept, as GET /_matrix/identity/v2/terms lists it", termsKey, i)
		}
		accepted[a] = true
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		log.Warn("using identity server over plain http; hashed numbers and tokens travel unencrypted",
			zap.String("identity_server", u.Redacted()))
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	return &identityClient{
		base:     strings.TrimRight(u.String(), "/"),
		accepted: accepted,
		openid:   opts.OpenID,
		http:     hc,
		timeout:  cfg.Timeout,
		log:      log,
		sem:      make(chan struct{}, 1),
	}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// SetLocal replaces the local source: the phone numbers of the other lines on this bridge and
// their owners' Matrix IDs. The bridge calls it whenever a login is added or removed. Numbers
// in national form are read in Config.DefaultRegion. On error (a bad number or Matrix ID, or
// two entries for one number with different owners) the previous table stays in place.
func (d *Directory) SetLocal(lines map[string]id.UserID) error {
	t, err := buildLocal(lines, d.region)
	if err != nil {
		return fmt.Errorf("set local lines: %w", err)
	}
	now := d.clock.Now()
	d.mu.Lock()
	d.local, d.localAt = t, now
	d.mu.Unlock()
	return nil
}

// Normalize returns the E.164 form of a phone number ("+15551234567"), reading national
// forms in Config.DefaultRegion. Errors wrap ErrBadNumber.
func (d *Directory) Normalize(number string) (string, error) {
	return normalize(number, d.region)
}

// Lookup says whether number is on Matrix: local lines first, then the static table, then the
// identity server (cached). number may be in any form phone.Parse reads; the E.164 form is
// the fast one (a cached lookup is a few map reads, ~0.1 µs; other forms are parsed first,
// ~12 µs).
//
// A non-nil error means "not found for now": the Result's MXID is empty and the caller takes
// the next route. Errors wrap ErrBadNumber (permanent) or ErrIdentityServer (temporary;
// cached for Config.ErrorTTL, then the server is asked again). ctx bounds the identity-server
// conversation: a lookup whose ctx is cancelled is not cached, one that runs past ctx's
// deadline counts as a slow identity server and is cached for ErrorTTL like other failures.
func (d *Directory) Lookup(ctx context.Context, number string) (Result, error) {
	now := d.clock.Now()
	if r, ok := d.known(number, now); ok {
		return r.Result, r.Err
	}
	e164, err := normalize(number, d.region)
	if err != nil {
		return Result{}, fmt.Errorf("look up number: %w", err)
	}
	if e164 != number {
		if r, ok := d.known(e164, now); ok {
			return r.Result, r.Err
		}
	}
	if d.is == nil {
		return Result{Source: SourceNone, Fetched: now}, nil
	}
	return d.ask(ctx, e164)
}

// known answers from the local lines, the static table or a live cache entry.
func (d *Directory) known(key string, now time.Time) (BatchResult, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if mxid, ok := d.local[key]; ok {
		return BatchResult{Result: Result{MXID: mxid, Source: SourceLocal, Fetched: d.localAt}}, true
	}
	if mxid, ok := d.static[key]; ok {
		return BatchResult{Result: Result{MXID: mxid, Source: SourceStatic, Fetched: d.createdAt}}, true
	}
	if e, ok := d.cache[key]; ok && now.Before(e.expires) {
		return BatchResult{Result: Result{MXID: e.mxid, Source: SourceIdentityServer, Fetched: e.fetched, FromCache: true}, Err: e.err}, true
	}
	return BatchResult{}, false
}

// ask looks one number up on the identity server, sharing the request with concurrent
// lookups of the same number.
func (d *Directory) ask(ctx context.Context, e164 string) (Result, error) {
	for {
		d.mu.Lock()
		if e, ok := d.cache[e164]; ok && d.clock.Now().Before(e.expires) {
			d.mu.Unlock()
			return Result{MXID: e.mxid, Source: SourceIdentityServer, Fetched: e.fetched, FromCache: true}, e.err
		}
		if c, ok := d.inflight[e164]; ok {
			d.mu.Unlock()
			select {
			case <-c.done:
				if c.canceled {
					continue
				}
				return c.res, c.err
			case <-ctx.Done():
				return Result{Source: SourceIdentityServer}, d.is.fail("wait for a lookup of the same number", ctx.Err())
			}
		}
		c := &call{done: make(chan struct{})}
		d.inflight[e164] = c
		d.mu.Unlock()

		found, err := d.is.lookup(ctx, []string{e164})
		c.canceled = errors.Is(err, context.Canceled) && ctx.Err() != nil
		results := d.store([]string{e164}, found, err, !c.canceled)
		c.res, c.err = results[0].Result, results[0].Err

		d.mu.Lock()
		delete(d.inflight, e164)
		d.mu.Unlock()
		close(c.done)
		return c.res, c.err
	}
}

// store turns an identity-server answer for numbers into results and, when cache is set,
// caches them (failures for ErrorTTL).
func (d *Directory) store(numbers []string, found map[string]id.UserID, err error, cache bool) []BatchResult {
	now := d.clock.Now()
	out := make([]BatchResult, len(numbers))
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, n := range numbers {
		e := entry{fetched: now}
		switch {
		case err != nil:
			e.err, e.expires = err, now.Add(d.errTTL)
		case found[n] != "":
			e.mxid, e.expires = found[n], now.Add(d.foundTTL)
		default:
			e.expires = now.Add(d.missTTL)
		}
		out[i] = BatchResult{Result: Result{MXID: e.mxid, Source: SourceIdentityServer, Fetched: now}, Err: e.err}
		if cache {
			d.put(n, e, now)
		}
	}
	if n := len(numbers); n > 0 {
		d.log.Debug("cached identity server answers", zap.Int("numbers", n), zap.Int("found", len(found)), zap.Bool("failed", err != nil))
	}
	return out
}

// put caches e under key, making room when the cache is full. Caller holds mu.
func (d *Directory) put(key string, e entry, now time.Time) {
	if _, ok := d.cache[key]; !ok && len(d.cache) >= d.maxEntries {
		for k, old := range d.cache {
			if !now.Before(old.expires) {
				delete(d.cache, k)
			}
		}
		for len(d.cache) >= d.maxEntries {
			var victim string
			var soonest time.Time
			for k, old := range d.cache {
				if victim == "" || old.expires.Before(soonest) {
					victim, soonest = k, old.expires
				}
			}
			delete(d.cache, victim)
		}
	}
	d.cache[key] = e
}

// LookupMany looks up several numbers at once, asking the identity server about all the
// unknown ones in batched requests. Results are in the order of numbers; each carries its
// own error with the meaning it has for Lookup. It does not share requests with concurrent
// Lookup calls.
func (d *Directory) LookupMany(ctx context.Context, numbers []string) []BatchResult {
	now := d.clock.Now()
	out := make([]BatchResult, len(numbers))
	pending := map[string][]int{} // E.164 -> indexes in numbers
	var order []string
	for i, n := range numbers {
		if r, ok := d.known(n, now); ok {
			out[i] = r
			continue
		}
		e164, err := normalize(n, d.region)
		if err != nil {
			out[i] = BatchResult{Err: fmt.Errorf("look up number: %w", err)}
			continue
		}
		if e164 != n {
			if r, ok := d.known(e164, now); ok {
				out[i] = r
				continue
			}
		}
		if d.is == nil {
			out[i] = BatchResult{Result: Result{Source: SourceNone, Fetched: now}}
			continue
		}
		if _, ok := pending[e164]; !ok {
			order = append(order, e164)
		}
		pending[e164] = append(pending[e164], i)
	}
	if len(order) == 0 {
		return out
	}
	found, err := d.is.lookup(ctx, order)
	canceled := errors.Is(err, context.Canceled) && ctx.Err() != nil
	for j, r := range d.store(order, found, err, !canceled) {
		for _, i := range pending[order[j]] {
			out[i] = r
		}
	}
	return out
}

// Invalidate forgets the cached identity-server answer for number, so that the next lookup
// asks again. The router calls it when a route built on an answer fails. Local and static
// answers are not cached and stay. Numbers that do not parse are ignored.
func (d *Directory) Invalidate(number string) {
	d.mu.Lock()
	_, ok := d.cache[number]
	delete(d.cache, number)
	d.mu.Unlock()
	if ok {
		return
	}
	if e164, err := normalize(number, d.region); err == nil && e164 != number {
		d.mu.Lock()
		delete(d.cache, e164)
		d.mu.Unlock()
	}
}
