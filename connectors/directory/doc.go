// Package directory answers "is this phone number on Matrix?" for the router.
//
// A Directory consults three sources, in order, and the first that knows the number wins:
//
//  1. local: the other lines on this bridge, whose owners' Matrix IDs the bridge feeds with
//     SetLocal whenever a login is added or removed;
//  2. static: a table from the config (directory.static), validated once by New;
//  3. identity_server: a Matrix identity server, asked through the Identity Service API v2
//     hashed lookup (hash_details, SHA-256 with the server's pepper, OpenID registration,
//     terms the operator accepted in directory.identity_server.accepted_terms).
//
// Answers from the identity server are cached: found for FoundTTL (default 24 h), not found
// for NotFoundTTL (default 1 h). The caller calls Invalidate when a route built on an answer
// fails, so the next lookup asks again. Local and static answers are never cached: they are
// already in memory and always current.
//
// # Errors mean "not found for now"
//
// Lookup returns an error when the number is not a phone number (ErrBadNumber) or when the
// identity server could not answer (down, slow, garbage, terms not accepted: errors.Is(err,
// ErrIdentityServer)). The Result that comes with an error always has an empty MXID, and
// callers must treat it as "not on Matrix for now" and take the next route; nothing is ever
// sent twice because of it. Identity-server failures are cached for ErrorTTL (default 1
// minute, much shorter than NotFoundTTL) so that a broken server is not asked again for
// every message; a cancelled ctx is never cached.
//
// # Privacy
//
// Phone numbers, their hashes and the identity-server tokens never reach the logs, and the
// errors this package returns carry numbers only in masked form (phone.Mask, the one rule:
// the last two digits only), so the caller may log them. The one exception is New's
// validation error for directory.static, which names the offending config entry so that the
// operator can find it.
package directory
