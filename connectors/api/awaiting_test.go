package api

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestFindAwaiting: a route's receipt finds only a message that took that
// route, is neither delivered nor failed, and is at most a week old.
func TestFindAwaiting(t *testing.T) {
	ctx := context.Background()
	s := NewStore(openDB(t, filepath.Join(t.TempDir(), "api.db")))
	now := time.Now()
	put := func(text, route string, st Status, at time.Time) *Message {
		t.Helper()
		m, _, err := s.put(ctx, &Message{Token: "a", To: "+15557654321", Text: text, Route: "auto", Line: "+15550001111"}, at, at, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.markRouted(ctx, m.ID, route, at); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetStatus(ctx, m.ID, st, "", at); err != nil {
			t.Fatal(err)
		}
		return m
	}
	rcsSent := put("by RCS", "rcs", StatusSent, now)
	smsSent := put("by SMS", "sms", StatusSent, now)
	done := put("delivered", "rcs", StatusDelivered, now)
	old := put("old", "rcs", StatusSent, now.Add(-8*24*time.Hour))

	for _, tc := range []struct {
		name  string
		m     *Message
		found bool
	}{
		{"sent by RCS", rcsSent, true},
		{"sent by SMS", smsSent, false},
		{"already delivered", done, false},
		{"older than a week", old, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.FindAwaiting(ctx, "rcs", now, func(id string) bool { return id == tc.m.RouterID() })
			if err != nil {
				t.Fatal(err)
			}
			if (got != nil) != tc.found || (got != nil && got.ID != tc.m.ID) {
				t.Errorf("FindAwaiting = %+v, want found %v", got, tc.found)
			}
		})
	}
}
