// Package gate decides where an inbound message from a sender goes: its own
// room, one "Unknown senders" room (quarantine), one "Codes" room, or
// nowhere (dropped or blocked). It keeps each owner's accepted and blocked
// senders and the quarantined messages in the database, so a restart loses
// neither. It imports no bridge code: senders are opaque keys.
package gate

import (
	"context"
	"fmt"
)

// Policy is network.privacy.unknown_senders.
type Policy string

// The policies for senders who are not known.
const (
	PolicyRoom       Policy = "room"
	PolicyQuarantine Policy = "quarantine"
	PolicyDrop       Policy = "drop"
)

// Verdict is where a message goes.
type Verdict int

// The verdicts of [Gate.Decide].
const (
	// Deliver: the sender's own room.
	Deliver Verdict = iota
	// Quarantine: the owner's Unknown senders room, until accepted.
	Quarantine
	// Drop: nowhere in Matrix (policy drop); the SMS itself is kept.
	Drop
	// Blocked: nowhere in Matrix (the sender is blocked).
	Blocked
	// Codes: the owner's Codes room, where messages disappear.
	Codes
)

func (v Verdict) String() string {
	return [...]string{"deliver", "quarantine", "drop", "blocked", "codes"}[v]
}

// Kind says what sort of address a sender has.
type Kind int

// The sender kinds.
const (
	// Phone is a full phone number.
	Phone Kind = iota
	// ShortCode is a numeric sender that is no full number (72404).
	ShortCode
	// Alpha is an alphanumeric sender (BANK), which cannot be answered.
	Alpha
)

// Sender describes one message's sender to [Gate.Decide].
type Sender struct {
	// Key identifies the sender; the same key is used by Accept and Block.
	Key  string
	Kind Kind
	// InContacts is true when the operator's contacts know the number.
	InContacts bool
	// HasRoom is true when the sender already has a room with the owner.
	HasRoom bool
}

// Config is the gate's part of the config.
type Config struct {
	Policy Policy
	// Codes sends short codes and alphanumeric senders to the Codes room.
	Codes bool
	// Blocked are sender keys blocked for every owner.
	Blocked []string
}

// Gate decides with a Config and a Store. Safe for concurrent use.
type Gate struct {
	cfg     Config
	blocked map[string]bool
	store   *Store
}

// New makes a gate; it does no I/O. It fails on an unknown policy.
func New(cfg Config, store *Store) (*Gate, error) {
	switch cfg.Policy {
	case PolicyRoom, PolicyQuarantine, PolicyDrop:
	case "":
		cfg.Policy = PolicyRoom
	default:
		return nil, fmt.Errorf("unknown-sender policy %q is not room, quarantine or drop", cfg.Policy)
	}
	g := &Gate{cfg: cfg, blocked: map[string]bool{}, store: store}
	for _, k := range cfg.Blocked {
		g.blocked[k] = true
	}
	return g, nil
}

// Store is the gate's store.
func (g *Gate) Store() *Store { return g.store }

// Policy is the configured policy.
func (g *Gate) Policy() Policy { return g.cfg.Policy }

// Decide says where a message from s to owner goes. Blocks come first, then
// the Codes room, then known senders (contacts, an existing room, accepted
// by the owner) get their own room, and the rest follow the policy.
func (g *Gate) Decide(ctx context.Context, owner string, s Sender) (Verdict, error) {
	st, err := g.store.State(ctx, owner, s.Key)
	if err != nil {
		return Deliver, err
	}
	switch {
	case g.blocked[s.Key] || st == StateBlocked:
		return Blocked, nil
	case s.Kind != Phone && g.cfg.Codes:
		return Codes, nil
	case g.cfg.Policy == PolicyRoom || s.InContacts || s.HasRoom || st == StateAccepted:
		return Deliver, nil
	case g.cfg.Policy == PolicyQuarantine:
		return Quarantine, nil
	default:
		return Drop, nil
	}
}

// BlockedByConfig reports whether a key is on the configured block list
// (which the block commands cannot change).
func (g *Gate) BlockedByConfig(key string) bool { return g.blocked[key] }
