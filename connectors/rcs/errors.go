package rcs

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNotRCS reports that the provider cannot reach the number over RCS (any
// more): a 404 on a send, typing or read call. The router should drop its
// cached "reachable" answer and fall back to SMS for this message.
var ErrNotRCS = errors.New("the number cannot be reached over RCS by this agent")

// ErrTemporary reports a failure that may pass: HTTP 429 or 5xx from the
// provider, or a network error, still failing after the provider's own
// retries. Retry the same route later; [APIError.RetryAfter] says when if
// the provider said so.
var ErrTemporary = errors.New("the RCS provider is temporarily unavailable")

// ErrPermanent reports a request the provider refused (a 4xx other than
// 401, 404 on a number, 409 on a retried send and 429). Retrying the same
// request will not help; the router should fail the message with a notice
// or fall back to SMS.
var ErrPermanent = errors.New("the RCS provider refused the request")

// ErrAuth reports that the provider rejected bubbled's credentials: the
// token endpoint refused them, or an API call still answered 401 after one
// token refresh. The operator must fix the credentials (service account
// key, client ID/secret) or the agent's permissions.
var ErrAuth = errors.New("the RCS provider rejected the credentials")

// ErrTooLong reports a text longer than one RCS message may be
// ([MaxTextLength]). It also matches [ErrPermanent]; callers that can split
// the text should check ErrTooLong first.
var ErrTooLong = &classError{msg: "the text is too long for one RCS message", class: ErrPermanent}

// ErrInvalidRequest reports a call bubbled refuses to make: a number that
// is not E.164, or an [OutboundMessage] without event ID, with neither or
// both of text and file. It also matches [ErrPermanent].
var ErrInvalidRequest = &classError{msg: "invalid RCS request", class: ErrPermanent}

// classError is a sentinel that also matches a broader class.
type classError struct {
	msg   string
	class error
}

func (e *classError) Error() string { return e.msg }

// Is lets errors.Is(ErrTooLong, ErrPermanent) hold.
func (e *classError) Is(target error) bool { return target == e.class }

// APIError is an error answer of a provider API (or a transport failure),
// already classified. It matches exactly one of [ErrNotRCS], [ErrTemporary],
// [ErrPermanent] and [ErrAuth] with errors.Is. Use errors.As to read the
// details.
type APIError struct {
	// Provider is "rbm" or "maap".
	Provider string
	// Op names the call, e.g. "send message".
	Op string
	// Status is the HTTP status, 0 for a transport failure.
	Status int
	// Code is the provider's symbolic code, e.g. "RESOURCE_EXHAUSTED" or
	// "POL1001", if the body had one.
	Code string
	// Message is the provider's text, cut to 300 bytes.
	Message string
	// RetryAfter is the provider's Retry-After, 0 when absent.
	RetryAfter time.Duration
	// Class is the sentinel the error matches.
	Class error
	// Err is the underlying transport error, if any.
	Err error
}

// Error implements error.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", e.Provider, e.Op)
	switch {
	case e.Status == 0 && e.Err != nil:
		fmt.Fprintf(&b, "%v", e.Err)
	default:
		fmt.Fprintf(&b, "HTTP %d", e.Status)
		if e.Code != "" {
			fmt.Fprintf(&b, " %s", e.Code)
		}
		if e.Message != "" {
			fmt.Fprintf(&b, ": %s", e.Message)
		}
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.Class != nil {
		fmt.Fprintf(&b, " (%s)", classHint(e.Class))
	}
	return b.String()
}

// classHint says what the operator (or the router) should do.
func classHint(class error) string {
	switch class {
	case ErrNotRCS:
		return "not reachable over RCS; fall back to SMS"
	case ErrTemporary:
		return "temporary; retry later"
	case ErrAuth:
		return "credentials rejected; check the service account key or client ID/secret and the agent's permissions"
	default:
		return "refused; retrying will not help"
	}
}

// Is matches the error's class.
func (e *APIError) Is(target error) bool { return target != nil && target == e.Class }

// Unwrap returns the transport error, if any.
func (e *APIError) Unwrap() error { return e.Err }

// classify maps an HTTP status of a number-scoped call to a class.
func classify(status int) error {
	switch {
	case status == 401:
		return ErrAuth
	case status == 404:
		return ErrNotRCS
	case status == 429 || status == 408:
		return ErrTemporary
	case status >= 500:
		return ErrTemporary
	default:
		return ErrPermanent
	}
}

// retryable reports whether the status is worth another attempt.
func retryable(status int) bool {
	switch status {
	case 408, 429, 500, 502, 503, 504:
		return true
	}
	return false
}
