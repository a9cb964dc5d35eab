package sms

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"strings"
)

// numberCheckPrefix starts every number-check SMS, so a check that comes
// back after its login flow ended (a restart, a timeout) is recognised
// and not shown as a message.
const numberCheckPrefix = "bubbled line check "

// numberCheckIDPrefix starts the OutMessage.ID of every number-check SMS.
const numberCheckIDPrefix = "check:"

// NumberCheck proves that a line's SIM has a phone number: the line texts
// a random code to that number, and only if the SIM has it does the network
// deliver the SMS back to the same modem. It trusts the modem to report
// what the network delivers, so it proves nothing about a modem the owner
// controls in software (a tcp:// modem): such modems are for admins only.
type NumberCheck struct {
	// Number is the number being proven, in E.164.
	Number string
	// Code is the random code the SMS carries (8 digits).
	Code string
}

// NewNumberCheck makes a check of number with a fresh random code.
func NewNumberCheck(number string) (NumberCheck, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(100_000_000))
	if err != nil {
		return NumberCheck{}, fmt.Errorf("make a number-check code: %w", err)
	}
	return NumberCheck{Number: number, Code: fmt.Sprintf("%08d", n.Int64())}, nil
}

// Message is the SMS the line sends itself; its ID starts with "check:".
func (c NumberCheck) Message() OutMessage {
	return OutMessage{
		ID:   numberCheckIDPrefix + c.Code,
		To:   c.Number,
		Text: numberCheckPrefix + c.Code + ": this SMS proves the line's own number to bubbled and is not shown anywhere.",
	}
}

// Matches reports whether m is this check's SMS come back: from the number
// being proven, carrying the code.
func (c NumberCheck) Matches(m *Message) bool {
	return c.Code != "" && m.From == c.Number && strings.HasPrefix(m.Text, numberCheckPrefix+c.Code+":")
}

// IsNumberCheck reports whether m is a number-check SMS of this line that
// came back (any code): it is never bridged as a message.
func IsNumberCheck(m *Message, ownNumber string) bool {
	return ownNumber != "" && m.From == ownNumber && strings.HasPrefix(m.Text, numberCheckPrefix)
}

// IsNumberCheckOutcome reports whether an outcome is about a number-check
// SMS (OutMessage.ID "check:…") rather than a person's message.
func IsNumberCheckOutcome(o Outcome) bool { return strings.HasPrefix(o.MessageID, numberCheckIDPrefix) }

// PendingCheck is a NumberCheck being waited for. Feed it the line's
// incoming messages (Consume) and outcomes (Outcome); Done says how it
// ended. It is safe for concurrent use.
type PendingCheck struct {
	NumberCheck
	done chan error // buffered 1; the first result wins
}

// Start makes a PendingCheck of c.
func (c NumberCheck) Start() *PendingCheck {
	return &PendingCheck{NumberCheck: c, done: make(chan error, 1)}
}

// Done receives nil once the check's SMS came back, or why it cannot.
func (p *PendingCheck) Done() <-chan error { return p.done }

func (p *PendingCheck) finish(err error) {
	select {
	case p.done <- err:
	default:
	}
}

// Consume reports whether m is a number-check SMS of the checked number
// (this check's, which completes it, or an older one) and so is never
// bridged.
func (p *PendingCheck) Consume(m *Message) bool {
	if p.Matches(m) {
		p.finish(nil)
		return true
	}
	return IsNumberCheck(m, p.Number)
}

// Outcome fails the check when its SMS cannot go out (failed, unknown, or
// held back by a cap).
func (p *PendingCheck) Outcome(o Outcome) {
	if o.MessageID != p.Message().ID {
		return
	}
	switch o.Kind {
	case OutcomeFailed, OutcomeUnknown, OutcomeHeld:
		p.finish(fmt.Errorf("the check SMS to %s did not go out: %s", p.Number, o.Reason))
	}
}
