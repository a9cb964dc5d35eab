package bridge_test

import (
	"fmt"
	"testing"
	"time"
)

// TestFirstSMSInNewPortalDecrypts repeats issue 9's "the first SMS in a
// brand-new portal was not decryptable" scenario: a user who just logged a
// line in gets first SMS from several new numbers, back to back, each
// making its own encrypted portal; every first message must reach the
// user's E2EE client decrypted.
func TestFirstSMSInNewPortalDecrypts(t *testing.T) {
	const rounds = 6
	e := newEnv(t)
	alice := e.newUser("alice")
	e.login(alice)
	for i := range rounds {
		if err := e.sim.Deliver(fmt.Sprintf("+1555888000%d", i), fmt.Sprintf("first SMS %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range rounds {
		from := ghostMXID(fmt.Sprintf("+1555888000%d", i))
		want := fmt.Sprintf("first SMS %d", i)
		evt, _ := alice.waitMessage(90*time.Second, from, func(b string) bool { return b == want })
		if !evt.Mautrix.WasEncrypted {
			t.Errorf("%q was not end-to-end encrypted", want)
		}
	}
}
