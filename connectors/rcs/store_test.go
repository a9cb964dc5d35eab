package rcs

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// memStore is an in-memory EventStore for fuzzing and handler unit tests.
type memStore struct {
	mu     sync.Mutex
	events []StoredEvent
	done   map[int64]string
	keys   map[string]bool
}

func newMemStore() *memStore {
	return &memStore{done: map[int64]string{}, keys: map[string]bool{}}
}

func (s *memStore) Put(_ context.Context, provider, key string, payload []byte, at time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys[provider+"\x00"+key] {
		return false, nil
	}
	s.keys[provider+"\x00"+key] = true
	s.events = append(s.events, StoredEvent{ID: int64(len(s.events) + 1), Provider: provider, Key: key, Payload: payload, ReceivedAt: at})
	return true, nil
}

func (s *memStore) Pending(_ context.Context, limit int) ([]StoredEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []StoredEvent
	for _, e := range s.events {
		if _, ok := s.done[e.ID]; !ok && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (s *memStore) MarkProcessed(_ context.Context, id int64, _ time.Time, failure string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done[id] = failure
	return nil
}

func (s *memStore) RecordFailure(_ context.Context, id int64, _ string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events[id-1].Attempts++
	return s.events[id-1].Attempts, nil
}

func (s *memStore) Prune(context.Context, time.Time) (int64, error) { return 0, nil }

func TestDBEventStore(t *testing.T) {
	ctx := context.Background()
	db := testDB(t)
	// Upgrade is idempotent.
	if err := Upgrade(ctx, db); err != nil {
		t.Fatalf("second Upgrade: %v", err)
	}
	s := NewDBEventStore(db)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	puts := []struct {
		provider, key string
		inserted      bool
	}{
		{"rbm", "message:a", true},
		{"rbm", "message:a", false}, // replay
		{"maap", "message:a", true}, // same key, other provider
		{"rbm", "event:b", true},
	}
	for i, p := range puts {
		ok, err := s.Put(ctx, p.provider, p.key, []byte(fmt.Sprintf(`{"n":%d}`, i)), t0.Add(time.Duration(i)*time.Hour))
		if err != nil || ok != p.inserted {
			t.Fatalf("Put %d %s/%s = %v %v, want %v", i, p.provider, p.key, ok, err, p.inserted)
		}
	}
	pending, err := s.Pending(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range pending {
		keys = append(keys, e.Provider+"/"+e.Key+"/"+string(e.Payload))
	}
	if want := []string{`rbm/message:a/{"n":0}`, `maap/message:a/{"n":2}`, `rbm/event:b/{"n":3}`}; !slices.Equal(keys, want) {
		t.Fatalf("pending = %q, want %q", keys, want)
	}
	if !pending[0].ReceivedAt.Equal(t0) {
		t.Errorf("ReceivedAt = %v, want %v", pending[0].ReceivedAt, t0)
	}
	if got, _ := s.Pending(ctx, 1); len(got) != 1 {
		t.Errorf("limit 1 gave %d", len(got))
	}
	for want := 1; want <= 2; want++ {
		n, err := s.RecordFailure(ctx, pending[1].ID, "boom")
		if err != nil || n != want {
			t.Fatalf("RecordFailure = %d %v, want %d", n, err, want)
		}
	}
	if _, err := s.RecordFailure(ctx, 999, "x"); err == nil {
		t.Error("RecordFailure of a missing row succeeded")
	}
	if err := s.MarkProcessed(ctx, pending[0].ID, t0, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkProcessed(ctx, pending[1].ID, t0, "gave up"); err != nil {
		t.Fatal(err)
	}
	left, _ := s.Pending(ctx, 10)
	if len(left) != 1 || left[0].Key != "event:b" {
		t.Fatalf("pending after marks = %+v", left)
	}
	// A replay of a processed event is still refused.
	if ok, _ := s.Put(ctx, "rbm", "message:a", []byte(`{}`), t0); ok {
		t.Fatal("replay of processed event stored again")
	}
	// Prune removes processed events received before the cut, never
	// pending ones.
	n, err := s.Prune(ctx, t0.Add(10*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("Prune = %d %v, want 2", n, err)
	}
	left, _ = s.Pending(ctx, 10)
	if len(left) != 1 {
		t.Fatalf("prune touched pending events: %+v", left)
	}
}
