package bridge_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/directory/isfake"
	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// TestIdentityServerLookup wires the identity-server source end to end:
// bubbled's bot gets an OpenID token from Dendrite, registers with the
// identity server (which checks the token with Dendrite), signs the terms
// the operator accepted in the config, and looks numbers up by hash only.
// When the identity server goes away, the ladder keeps working (SMS).
func TestIdentityServerLookup(t *testing.T) {
	const carolNumber = "+15550009999"
	var is *isfake.Server
	e := newEnvWith(t, envOptions{
		sim: modemsim.Options{OwnNumber: lineNumber, Echo: true},
		networkFor: func(hsURL string) string {
			is = isfake.New(isfake.Options{
				Policies: []isfake.Policy{{ID: "privacy_policy", Version: "1.0", Docs: []isfake.PolicyDoc{{Lang: "en", Name: "Privacy", URL: "https://is.test/privacy-1.0.html"}}}},
				Verifier: isfake.HomeserverVerifier{Homeservers: map[string]string{"localhost": hsURL}},
			})
			if err := is.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = is.Close() })
			return fmt.Sprintf(`  directory:
    identity_server:
      url: %s
      accepted_terms: ["https://is.test/privacy-1.0.html"]
      timeout: 3s`, is.URL())
		},
	})
	is.Bind(carolNumber, "@carol:localhost")
	alice := e.newUser("alice")
	e.login(alice)
	mgmt := alice.managementRoom()

	alice.command(mgmt, "whois "+carolNumber, 30*time.Second, func(b string) bool {
		return strings.Contains(b, "@carol:localhost") && strings.Contains(b, "identity_server")
	})
	if got := is.Accepted("@smsbot:localhost"); len(got) == 0 {
		t.Errorf("the bot did not sign the accepted terms")
	}
	for _, r := range is.Requests() {
		if strings.Contains(string(r.Body), "15550009999") || strings.Contains(r.Path, "15550009999") {
			t.Errorf("the identity server saw the number in clear: %s %s", r.Path, r.Body)
		}
	}
	alice.command(mgmt, "whois +15550008888", 30*time.Second, func(b string) bool {
		return strings.Contains(b, "not on Matrix")
	})

	// The identity server goes down: lookups fail clearly, messages still go as SMS.
	_ = is.Close()
	alice.command(mgmt, "whois +15550007777", 30*time.Second, func(b string) bool {
		return strings.Contains(b, "Could not find out")
	})
	alice.command(mgmt, "start-chat +15550007777", 30*time.Second, func(b string) bool { return strings.Contains(b, "Created chat") })
	var portal id.RoomID
	for deadline := time.Now().Add(30 * time.Second); portal == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if rooms := alice.roomsWith(ghostMXID("+15550007777")); len(rooms) == 1 {
			portal = rooms[0]
		}
	}
	if portal == "" {
		t.Fatal("no portal")
	}
	if _, err := alice.cli.SendText(context.Background(), portal, "still goes as SMS"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sent, err := e.sim.WaitSent(ctx, 1)
	if err != nil || sent[0].Text != "still goes as SMS" {
		t.Fatalf("modem got %+v, %v; log:\n%s", sent, err, e.tail())
	}
}
