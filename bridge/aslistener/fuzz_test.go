package aslistener

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzParseTransaction: any body either fails with ErrNotJSON or yields
// events that each have a type and are JSON objects; nothing panics. The
// seeds in testdata/fuzz/FuzzParseTransaction run as unit tests.
func FuzzParseTransaction(f *testing.F) {
	f.Add([]byte(`{"events":[{"type":"m.room.message","event_id":"$a","sender":"@a:x","content":{"body":"hi"}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		txn, err := ParseTransaction(body)
		if err != nil {
			if txn != nil {
				t.Fatal("a transaction and an error")
			}
			return
		}
		for _, e := range txn.Events {
			if e.Type == "" || !json.Valid(e.Raw) || bytes.TrimSpace(e.Raw)[0] != '{' {
				t.Fatalf("kept an event without a type or not an object: %q", e.Raw)
			}
			switch e.Class {
			case ClassTimeline, ClassEphemeral, ClassToDevice:
			default:
				t.Fatalf("event of class %q", e.Class)
			}
		}
	})
}
