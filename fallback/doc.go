// Package fallback is bubbled's router: for each outgoing message it picks
// the first route that can reach the contact in a configured ladder
// (default Matrix, then RCS, then SMS), retries temporary failures with
// backoff and jitter, moves down the ladder when a route cannot reach the
// contact, and re-sends a message down the ladder when the route it went by
// does not confirm it in time ("Send as SMS", as iMessage does).
//
// The package is plain Go: it never imports bridgev2. Routes plug in through
// the small interfaces declared here (Transport, and the optional Reacher and
// Invalidator); the phone-number-to-Matrix lookup through Directory; what a
// person should read in the room through Notifier. Errors decide what
// happens next (see Classify): ErrUnreachable tries the next route, a
// temporary error retries the same route, a permanent error fails the
// message, a cancelled context stops.
//
// The Router owns no goroutine of its own: confirmation timers run on the
// injected Clock (time.AfterFunc in production), and Close stops them and
// waits for re-sends already running.
package fallback
