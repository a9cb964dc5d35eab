package aslistener

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Class says where in a transaction an event came from.
type Class string

// The classes of events a transaction carries.
const (
	ClassTimeline  Class = "timeline"
	ClassEphemeral Class = "ephemeral"
	ClassToDevice  Class = "to_device"
)

// Event is one event of a transaction, with the fields the journal's filter
// needs read from it and its JSON kept as sent.
type Event struct {
	Class  Class
	ID     string
	Type   string
	Sender string
	// State is true for state events (they have a state_key).
	State bool
	Raw   json.RawMessage
}

// Transaction is what ParseTransaction reads of a transaction body.
type Transaction struct {
	// Events are the timeline, ephemeral and to-device events, in that
	// order (mautrix handles ephemeral and to-device events first too).
	Events []Event
	// Skipped counts events that were not JSON objects with a string type;
	// mautrix would have refused the whole transaction for them.
	Skipped int
	// DeviceLists and OTKCounts are the MSC3202 parts, passed on as they came.
	DeviceLists json.RawMessage
	OTKCounts   json.RawMessage
}

// txnBody is the wire form; the stable keys win over the MSC2409/MSC3202 ones.
type txnBody struct {
	Events         []json.RawMessage `json:"events"`
	Ephemeral      []json.RawMessage `json:"ephemeral"`
	MSCEphemeral   []json.RawMessage `json:"de.sorunome.msc2409.ephemeral"`
	ToDevice       []json.RawMessage `json:"to_device"`
	MSCToDevice    []json.RawMessage `json:"de.sorunome.msc2409.to_device"`
	DeviceLists    json.RawMessage   `json:"device_lists"`
	MSCDeviceLists json.RawMessage   `json:"org.matrix.msc3202.device_lists"`
	OTKCounts      json.RawMessage   `json:"device_one_time_keys_count"`
	MSCOTKCounts   json.RawMessage   `json:"org.matrix.msc3202.device_one_time_keys_count"`
}

// ErrNotJSON is wrapped by ParseTransaction's error for a body that is not
// a JSON object with event lists.
var ErrNotJSON = errors.New("not a transaction")

// ParseTransaction reads a transaction body (PUT
// /_matrix/app/v1/transactions/{txnId}). It fails only when the body is not
// a JSON object with lists where the spec has lists; single events that are
// not objects with a string type are counted in Skipped and left out.
func ParseTransaction(body []byte) (*Transaction, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("%w: the body is not a JSON object", ErrNotJSON)
	}
	var b txnBody
	if err := json.Unmarshal(trimmed, &b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	txn := &Transaction{DeviceLists: firstSet(b.DeviceLists, b.MSCDeviceLists), OTKCounts: firstSet(b.OTKCounts, b.MSCOTKCounts)}
	txn.add(ClassEphemeral, firstList(b.Ephemeral, b.MSCEphemeral))
	txn.add(ClassToDevice, firstList(b.ToDevice, b.MSCToDevice))
	txn.add(ClassTimeline, b.Events)
	return txn, nil
}

func (t *Transaction) add(class Class, raws []json.RawMessage) {
	for _, raw := range raws {
		var head struct {
			ID       any             `json:"event_id"`
			Type     any             `json:"type"`
			Sender   any             `json:"sender"`
			StateKey json.RawMessage `json:"state_key"`
		}
		if json.Unmarshal(raw, &head) != nil || bytes.TrimSpace(raw)[0] != '{' {
			t.Skipped++
			continue
		}
		typ, ok := head.Type.(string)
		if !ok || typ == "" {
			t.Skipped++
			continue
		}
		evID, _ := head.ID.(string)
		sender, _ := head.Sender.(string)
		state := len(head.StateKey) > 0 && !bytes.Equal(head.StateKey, []byte("null"))
		t.Events = append(t.Events, Event{Class: class, ID: evID, Type: typ, Sender: sender, State: state, Raw: raw})
	}
}

func firstList(a, b []json.RawMessage) []json.RawMessage {
	if a != nil {
		return a
	}
	return b
}

func firstSet(a, b json.RawMessage) json.RawMessage {
	if len(a) > 0 && !bytes.Equal(a, []byte("null")) {
		return a
	}
	if len(b) > 0 && !bytes.Equal(b, []byte("null")) {
		return b
	}
	return nil
}
