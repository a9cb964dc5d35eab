package directory

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// Mask hides all but the last three characters of a phone number, keeping a leading "+", for
// logs and errors: "+15551234567" becomes "+********567". Short inputs become "***".
func Mask(number string) string {
	plus := strings.HasPrefix(number, "+")
	rest := strings.TrimPrefix(number, "+")
	n := len([]rune(rest))
	if n <= 4 {
		return "***"
	}
	var b strings.Builder
	if plus {
		b.WriteByte('+')
	}
	b.WriteString(strings.Repeat("*", n-3))
	b.WriteString(string([]rune(rest)[n-3:]))
	return b.String()
}

// HashMSISDN returns the identity-service v2 "sha256" lookup hash of a phone number:
// URL-safe unpadded base64 of SHA-256("<digits> msisdn <pepper>"), where digits is the E.164
// number without its leading "+" (the spec's MSISDN form).
func HashMSISDN(e164, pepper string) string {
	sum := sha256.Sum256([]byte(strings.TrimPrefix(e164, "+") + " msisdn " + pepper))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
