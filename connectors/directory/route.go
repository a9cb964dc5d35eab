package directory

import (
	"context"

	"github.com/bubbled/bubbled/fallback"
)

// RouterAdapter is a Directory as the route ladder (package fallback) asks
// it: a fallback.Directory, and a fallback.Invalidator so the router can
// make it ask again when a route built on an answer fails. Directory's own
// Lookup returns a richer Result, so the router gets this thin view of it.
// It is safe for concurrent use, like the Directory it wraps.
type RouterAdapter struct {
	d       *Directory
	observe func(Result, error)
}

var (
	_ fallback.Directory   = RouterAdapter{}
	_ fallback.Invalidator = RouterAdapter{}
)

// NewRouterAdapter returns the router's view of d. It does no I/O.
func NewRouterAdapter(d *Directory) RouterAdapter { return RouterAdapter{d: d} }

// WithObserver returns a copy of a that also tells f of every answer the
// router gets (e.g. for a cache hit counter). f runs on the caller's
// goroutine and must not block.
func (a RouterAdapter) WithObserver(f func(Result, error)) RouterAdapter {
	a.observe = f
	return a
}

// Lookup answers with d.Lookup's MXID, source and answer time; its errors
// are d.Lookup's, which the router takes as "pass the Matrix route over".
func (a RouterAdapter) Lookup(ctx context.Context, e164 string) (fallback.Answer, error) {
	r, err := a.d.Lookup(ctx, e164)
	if a.observe != nil {
		a.observe(r, err)
	}
	return fallback.Answer{MXID: r.MXID, Source: string(r.Source), Fetched: r.Fetched}, err
}

// Invalidate forgets the cached answer of a number (d.Invalidate).
func (a RouterAdapter) Invalidate(e164 string) { a.d.Invalidate(e164) }
