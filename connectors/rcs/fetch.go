package rcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// MaxInboundFile caps a file fetched from a provider: 100 MiB, the largest
// file RCS carries.
const MaxInboundFile = 100 << 20

// ErrUnfetchable marks a file that fetching again will not bring: the URL
// is not http(s), the provider answered 4xx (expired link), or the file is
// over the cap.
var ErrUnfetchable = errors.New("the file cannot be fetched")

// fetchClient bounds one download; provider URLs are signed and need no
// credentials.
var fetchClient = &http.Client{Timeout: 2 * time.Minute}

// Fetch downloads the file from the provider's URL, at most max bytes. An
// error wrapping ErrUnfetchable is final; any other (network, 5xx) may
// work later.
func (f *InboundFile) Fetch(ctx context.Context, max int64) ([]byte, error) {
	u, err := url.Parse(f.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("fetch RCS file %q: URL %q is not http(s): %w", f.Name, f.URL, ErrUnfetchable)
	}
	if f.Size > max {
		return nil, fmt.Errorf("fetch RCS file %q: %d bytes is over %d: %w", f.Name, f.Size, max, ErrUnfetchable)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch RCS file %q: %w", f.Name, err)
	}
	resp, err := fetchClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch RCS file %q: %w", f.Name, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 4:
		return nil, fmt.Errorf("fetch RCS file %q: the provider answered %s: %w", f.Name, resp.Status, ErrUnfetchable)
	case resp.StatusCode/100 != 2:
		return nil, fmt.Errorf("fetch RCS file %q: the provider answered %s", f.Name, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("fetch RCS file %q: %w", f.Name, err)
	case int64(len(data)) > max:
		return nil, fmt.Errorf("fetch RCS file %q: over %d bytes: %w", f.Name, max, ErrUnfetchable)
	}
	return data, nil
}
