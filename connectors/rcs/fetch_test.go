package rcs

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestInboundFileFetch(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 1000)
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		switch r.URL.Path {
		case "/ok":
			_, _ = w.Write(data)
		case "/gone":
			http.Error(w, "expired", http.StatusForbidden)
		default:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	if got, err := (&InboundFile{URL: srv.URL + "/ok"}).Fetch(ctx, 1000); err != nil || !bytes.Equal(got, data) {
		t.Errorf("ok: %d bytes, %v", len(got), err)
	}
	for _, tc := range []struct {
		name  string
		f     InboundFile
		final bool
	}{
		{"over the cap", InboundFile{URL: srv.URL + "/ok"}, true},
		{"announced over the cap", InboundFile{URL: srv.URL + "/ok", Size: 5000}, true},
		{"expired link", InboundFile{URL: srv.URL + "/gone"}, true},
		{"not http", InboundFile{URL: "file:///etc/passwd"}, true},
		{"provider busy", InboundFile{URL: srv.URL + "/busy"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.f.Fetch(ctx, 999)
			if err == nil || errors.Is(err, ErrUnfetchable) != tc.final {
				t.Errorf("Fetch = %v, want final=%v", err, tc.final)
			}
		})
	}
}
