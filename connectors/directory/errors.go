package directory

import (
	"errors"
	"fmt"

	"github.com/bubbled/bubbled/connectors/phone"
)

// ErrBadNumber is wrapped by Lookup, LookupMany, SetLocal and New when a phone number does
// not parse. It is permanent: asking again with the same input gives the same answer. It is
// phone.ErrBadNumber, so one errors.Is check serves every package that parses numbers.
var ErrBadNumber = phone.ErrBadNumber

// ErrIdentityServer is wrapped by every error that comes from asking the identity server:
// it is down, slow, answers garbage, refuses the OpenID token, or wants terms accepted. The
// caller treats such a lookup as "not found for now".
var ErrIdentityServer = errors.New("identity server lookup failed")

// ErrTermsNotAccepted is wrapped (together with ErrIdentityServer) when the identity server
// demands terms of service that directory.identity_server.accepted_terms does not list. The
// message names the policies and their URLs.
var ErrTermsNotAccepted = errors.New("identity server terms not accepted")

// MatrixError is a standard Matrix error response ({"errcode", "error"}) or another non-2xx
// answer from the identity server. Code is "" when the body was not a Matrix error.
type MatrixError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the Matrix errcode, e.g. "M_UNAUTHORIZED".
	Code string
	// Message is the server's "error" text, shortened to 200 characters, with numbers and
	// hashes from the request removed.
	Message string
}

// Error implements error.
func (e *MatrixError) Error() string {
	switch {
	case e.Code == "":
		return fmt.Sprintf("HTTP %d without a Matrix error body", e.Status)
	case e.Message == "":
		return fmt.Sprintf("HTTP %d %s", e.Status, e.Code)
	default:
		return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message)
	}
}

// Matrix error codes the client reacts to.
const (
	codeUnauthorized   = "M_UNAUTHORIZED"
	codeUnknownToken   = "M_UNKNOWN_TOKEN"
	codeTermsNotSigned = "M_TERMS_NOT_SIGNED"
	codeInvalidPepper  = "M_INVALID_PEPPER"
)

func matrixError(err error) (*MatrixError, bool) {
	var me *MatrixError
	ok := errors.As(err, &me)
	return me, ok
}
