package bridge

import (
	"strings"

	"maunium.net/go/mautrix/bridgev2/networkid"

	"github.com/bubbled/bubbled/connectors/phone"
)

// ids.go owns every mapping between phone numbers and bridgev2 identifiers:
//
//   - a contact's ghost and portal are keyed by the E.164 number without "+"
//     ("15551234567"); an alphanumeric sender ("BANK") is keyed "alpha_bank"
//     (lower-cased: such senders cannot be answered and case is not significant);
//   - a numeric sender that is no full phone number (a short code such as
//     72404) is keyed "local_72404" and answered by those digits;
//   - a login (one phone line) is keyed by its own E.164 number without "+";
//   - a portal is a DM: PortalKey{ID: contact, Receiver: login}, so two lines
//     talking to the same contact get two rooms, each answering from its line;
//   - the router's conversation key of a portal is "<login>/<contact>";
//   - RCS messages are stored under their provider message IDs, prefixed.

// alphaPrefix marks user IDs of alphanumeric senders, which cannot be replied to.
const alphaPrefix = "alpha_"

// Message ID prefixes of RCS messages in the bridgev2 database.
const (
	rcsOutPrefix = "rcs:"   // our messages sent by RCS: "rcs:<provider message ID>"
	rcsInPrefix  = "rcsin:" // the contact's RCS messages
)

// localPrefix marks numeric senders that are not full phone numbers (short
// codes such as 72404): they are answered by their digits as they came.
const localPrefix = "local_"

// UserIDForSender maps a sender address as the SMS layer reports it ("+E164",
// national digits, or alphanumeric text) to a ghost ID.
func UserIDForSender(addr, defaultRegion string) networkid.UserID {
	if !looksNumeric(addr) {
		return networkid.UserID(alphaPrefix + sanitizeAlpha(addr))
	}
	if e164, err := phone.Parse(addr, defaultRegion); err == nil {
		return UserIDForNumber(e164)
	}
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, addr)
	if digits == "" {
		return networkid.UserID(alphaPrefix + "unknown")
	}
	return networkid.UserID(localPrefix + digits)
}

// convKey is the router's conversation key of a portal: "<login>/<contact>".
func convKey(key networkid.PortalKey) string {
	return string(key.Receiver) + "/" + string(key.ID)
}

// portalKeyOf is the inverse of convKey.
func portalKeyOf(conv string) networkid.PortalKey {
	receiver, contact, _ := strings.Cut(conv, "/")
	return networkid.PortalKey{ID: networkid.PortalID(contact), Receiver: networkid.UserLoginID(receiver)}
}

// UserIDForNumber maps an E.164 number ("+15551234567") to a ghost ID.
func UserIDForNumber(e164 string) networkid.UserID {
	return networkid.UserID(strings.TrimPrefix(e164, "+"))
}

// PortalKeyFor is the portal of a contact on a line.
func PortalKeyFor(contact networkid.UserID, line networkid.UserLoginID) networkid.PortalKey {
	return networkid.PortalKey{ID: networkid.PortalID(contact), Receiver: line}
}

// LoginIDForNumber maps a line's own E.164 number to its login ID.
func LoginIDForNumber(e164 string) networkid.UserLoginID {
	return networkid.UserLoginID(strings.TrimPrefix(e164, "+"))
}

// NumberForUserID is the inverse of UserIDForSender: the address to answer,
// "+E164" or a short code's digits. ok is false for alphanumeric senders,
// which have no number to answer.
func NumberForUserID(uid networkid.UserID) (number string, ok bool) {
	s := string(uid)
	if digits, found := strings.CutPrefix(s, localPrefix); found && phone.IsDigits(digits) {
		return digits, true
	}
	if !phone.IsDigits(s) {
		return "", false
	}
	return "+" + s, true
}

// ValidUserID reports whether uid could have been made by this package.
func ValidUserID(uid networkid.UserID) bool {
	s := string(uid)
	if strings.HasPrefix(s, alphaPrefix) {
		return len(s) > len(alphaPrefix)
	}
	if digits, found := strings.CutPrefix(s, localPrefix); found {
		return len(digits) >= 1 && len(digits) <= 15 && phone.IsDigits(digits)
	}
	return len(s) >= 3 && len(s) <= 15 && phone.IsDigits(s)
}

func looksNumeric(addr string) bool {
	for _, r := range addr {
		if (r < '0' || r > '9') && !strings.ContainsRune("+-() .", r) {
			return false
		}
	}
	return true
}

// sanitizeAlpha keeps an alphanumeric sender ID inside Matrix localpart rules
// after bridgev2's username template escaping.
func sanitizeAlpha(addr string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(addr)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '.' || r == '_':
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}
