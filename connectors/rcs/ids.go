package rcs

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"strconv"
)

// Namespace is the fixed UUID namespace of bubbled's RCS message IDs,
// itself UUIDv5(URL namespace, "urn:bubbled:rcs:message-id"). It must never
// change: IDs derived from it are what makes a resend after a crash a
// duplicate the provider ignores instead of a second message.
const Namespace = "44901591-bbd5-508b-89de-fad3d510467b"

// namespaceURL is RFC 9562's URL namespace.
const namespaceURL = "6ba7b811-9dad-11d1-80b4-00c04fd430c8"

// MessageID returns the provider message ID of part part (0 for the first
// or only one) of the Matrix event eventID: a UUIDv5 in [Namespace]. A
// Matrix event that becomes several RCS messages (a file and its caption)
// uses parts 0, 1, ... The result is stable across restarts and versions.
func MessageID(eventID string, part int) string {
	name := "message:" + eventID
	if part > 0 {
		name += "#" + strconv.Itoa(part)
	}
	return uuidV5(Namespace, name)
}

// readEventID returns the ID of the READ event for the user's message
// msgID, so resending the same receipt is deduplicated by the provider.
func readEventID(msgID string) string { return uuidV5(Namespace, "read:"+msgID) }

// uuidV5 computes a name-based (SHA-1) UUID per RFC 9562 §5.5. ns must be a
// canonical UUID string.
func uuidV5(ns, name string) string {
	nsb, err := parseUUID(ns)
	if err != nil {
		panic("rcs: bad namespace UUID " + ns)
	}
	h := sha1.New()
	h.Write(nsb[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return formatUUID(u)
}

// uuidV4 returns a random UUID for IDs that need no idempotency (typing
// events, capability request IDs).
func uuidV4() string {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		panic("rcs: no randomness: " + err.Error())
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return formatUUID(u)
}

func formatUUID(u [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], u[10:16])
	return string(b[:])
}

type uuidError string

func (e uuidError) Error() string { return "not a UUID: " + string(e) }

func parseUUID(s string) ([16]byte, error) {
	var u [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, uuidError(s)
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, uuidError(s)
	}
	return u, nil
}
