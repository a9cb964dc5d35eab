package directory

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// HashMSISDN returns the identity-service v2 "sha256" lookup hash of a phone number:
// URL-safe unpadded base64 of SHA-256("<digits> msisdn <pepper>"), where digits is the E.164
// number without its leading "+" (the spec's MSISDN form).
func HashMSISDN(e164, pepper string) string {
	sum := sha256.Sum256([]byte(strings.TrimPrefix(e164, "+") + " msisdn " + pepper))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
