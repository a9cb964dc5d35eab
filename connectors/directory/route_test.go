package directory_test

import (
	"context"
	"errors"
	"testing"

	"github.com/bubbled/bubbled/connectors/directory"
	"github.com/bubbled/bubbled/fallback"
)

// TestRouterAdapter: the router sees the directory's answers (MXID, source,
// answer time), negative answers as a nil error with no MXID, and lookup
// errors unchanged.
func TestRouterAdapter(t *testing.T) {
	clock := newClock()
	d, err := directory.New(directory.Config{Static: map[string]string{bobNum: string(bob)}}, directory.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SetLocal(nil); err != nil {
		t.Fatal(err)
	}
	var observed []directory.Source
	var dir fallback.Directory = directory.NewRouterAdapter(d).WithObserver(func(r directory.Result, err error) {
		observed = append(observed, r.Source)
	})
	ctx := context.Background()
	for _, tc := range []struct {
		name, number string
		want         fallback.Answer
		wantErr      error
	}{
		{name: "static", number: bobNum, want: fallback.Answer{MXID: bob, Source: string(directory.SourceStatic), Fetched: clock.Now()}},
		{name: "nowhere", number: daveNum, want: fallback.Answer{Source: string(directory.SourceNone), Fetched: clock.Now()}},
		{name: "not a number", number: "hello", wantErr: directory.ErrBadNumber},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dir.Lookup(ctx, tc.number)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || got.Found() {
					t.Fatalf("Lookup(%q) = %+v, %v; want no answer and %v", tc.number, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.MXID != tc.want.MXID || got.Source != tc.want.Source || !got.Fetched.Equal(tc.want.Fetched) {
				t.Fatalf("Lookup(%q) = %+v, %v; want %+v", tc.number, got, err, tc.want)
			}
		})
	}
	if len(observed) != 3 || observed[0] != directory.SourceStatic || observed[1] != directory.SourceNone {
		t.Errorf("the observer saw %v; want every answer (static, none, and the failed one)", observed)
	}
	inv, ok := dir.(fallback.Invalidator)
	if !ok {
		t.Fatal("the adapter is no fallback.Invalidator: the router could not make the directory ask again")
	}
	inv.Invalidate(bobNum) // a static answer stays; Invalidate must not break it
	if got, err := dir.Lookup(ctx, bobNum); err != nil || got.MXID != bob {
		t.Fatalf("Lookup after Invalidate = %+v, %v", got, err)
	}
}
