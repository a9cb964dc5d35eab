package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Token is one client of the API (config api.tokens[]).
type Token struct {
	// Name names the client in logs, in the Matrix room ("sent by API
	// token <name>") and in its messages' records. Unique.
	Name string
	// Secret is the bearer token the client sends. Never logged.
	Secret string
	// Lines are the E.164 numbers of the lines the token may send from;
	// the first is the default. Never empty: a token cannot send from a
	// line nobody gave it.
	Lines []string
	// Recipients are the numbers the token may text: an E.164 number, a
	// prefix ending in "*" ("+1555*"), or "*" for anyone.
	Recipients []string
	// DailyCap is how many messages the token may send per UTC day; 0 is
	// no cap.
	DailyCap int
}

// mayText reports whether the token may text e164.
func (t *Token) mayText(e164 string) bool {
	for _, r := range t.Recipients {
		switch {
		case r == "*":
			return true
		case strings.HasSuffix(r, "*"):
			if strings.HasPrefix(e164, strings.TrimSuffix(r, "*")) {
				return true
			}
		case r == e164:
			return true
		}
	}
	return false
}

// mayUse reports whether the token may send from the line e164.
func (t *Token) mayUse(e164 string) bool {
	for _, l := range t.Lines {
		if l == e164 {
			return true
		}
	}
	return false
}

// tokenSet finds the token of a request. Secrets are compared as SHA-256
// digests in constant time, every token each time, so neither the time
// nor the path taken depends on how much of a secret a guess got right.
type tokenSet struct {
	tokens  []Token
	digests [][32]byte
}

func newTokenSet(tokens []Token) *tokenSet {
	ts := &tokenSet{tokens: tokens}
	for _, t := range tokens {
		ts.digests = append(ts.digests, sha256.Sum256([]byte(t.Secret)))
	}
	return ts
}

// find returns the token whose secret the request carries as
// "Authorization: Bearer <secret>", or nil.
func (ts *tokenSet) find(r *http.Request) *Token {
	h := r.Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(secret)))
	found := -1
	for i := range ts.digests {
		if subtle.ConstantTimeCompare(d[:], ts.digests[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 || ts.tokens[found].Secret == "" {
		return nil
	}
	return &ts.tokens[found]
}
