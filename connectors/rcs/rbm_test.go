package rcs

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bubbled/bubbled/connectors/rcs/rbmfake"
)

func TestRBMWireFormat(t *testing.T) {
	fake := startRBMFake(t, rbmfake.Options{})
	fake.SetCapabilities(alice, "RICHCARD_STANDALONE")
	p := newTestRBM(t, fake, newFakeClock())
	ctx := context.Background()

	ok, features, err := p.Capability(ctx, alice)
	if err != nil || !ok || !slices.Equal(features, []string{"RICHCARD_STANDALONE"}) {
		t.Fatalf("Capability = %v %v %v", ok, features, err)
	}

	id, err := p.Send(ctx, alice, &OutboundMessage{EventID: "$ttl", Text: "expires", TTL: 90 * time.Minute})
	if err != nil {
		t.Fatalf("send with TTL: %v (fake: %q)", err, fake.Rejections())
	}
	name, err := p.CreateFile(ctx, "https://media.example.org/a.png", "")
	if err != nil {
		t.Fatalf("create file: %v (fake: %q)", err, fake.Rejections())
	}
	if _, err := p.Send(ctx, alice, &OutboundMessage{EventID: "$up", File: &FileRef{URL: name}}); err != nil {
		t.Fatalf("send uploaded file: %v (fake: %q)", err, fake.Rejections())
	}
	if _, err := p.Send(ctx, alice, &OutboundMessage{EventID: "$url", File: &FileRef{URL: "https://media.example.org/b.png", ThumbnailURL: "https://media.example.org/b-thumb.png"}}); err != nil {
		t.Fatalf("send file URL: %v (fake: %q)", err, fake.Rejections())
	}
	msgs := fake.Messages()
	if len(msgs) != 3 {
		t.Fatalf("fake has %d messages, want 3", len(msgs))
	}
	if msgs[0].MessageID != id || msgs[0].TTL != "5400s" || msgs[0].Text != "expires" {
		t.Errorf("TTL message recorded as %+v", msgs[0])
	}
	if msgs[1].UploadedFile != name {
		t.Errorf("uploaded file message recorded as %+v", msgs[1])
	}
	if msgs[2].FileURL != "https://media.example.org/b.png" || msgs[2].ThumbnailURL != "https://media.example.org/b-thumb.png" {
		t.Errorf("file URL message recorded as %+v", msgs[2])
	}

	// Typing: on sends IS_TYPING, off sends nothing (RBM has no idle event).
	if err := p.SendTyping(ctx, alice, true); err != nil {
		t.Fatalf("typing on: %v", err)
	}
	before := fake.APIRequests()
	if err := p.SendTyping(ctx, alice, false); err != nil {
		t.Fatalf("typing off: %v", err)
	}
	if fake.APIRequests() != before {
		t.Error("typing off made a request")
	}
	// Read twice: one event at the fake (the second is a 409 duplicate).
	for range 2 {
		if err := p.SendRead(ctx, alice, "MsGuser1"); err != nil {
			t.Fatalf("read: %v (fake: %q)", err, fake.Rejections())
		}
	}
	evs := fake.AgentEvents()
	if len(evs) != 2 || evs[0].EventType != "IS_TYPING" || evs[1].EventType != "READ" ||
		evs[1].MessageID != "MsGuser1" || evs[1].EventID != readEventID("MsGuser1") {
		t.Fatalf("agent events = %+v", evs)
	}
	if err := p.Revoke(ctx, alice, id); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if rv := fake.Revocations(); len(rv) != 1 || !rv[0].Known || rv[0].MessageID != id {
		t.Fatalf("revocations = %+v", rv)
	}
	if !fake.Messages()[0].Revoked {
		t.Error("message not marked revoked")
	}
	// Typing and read to a number that lost RCS.
	fake.RemoveNumber(alice)
	if err := p.SendTyping(ctx, alice, true); !errors.Is(err, ErrNotRCS) {
		t.Errorf("typing to non-RCS number: %v, want ErrNotRCS", err)
	}
	if err := p.SendRead(ctx, alice, "MsGuser2"); !errors.Is(err, ErrNotRCS) {
		t.Errorf("read to non-RCS number: %v, want ErrNotRCS", err)
	}
}

// otherServiceAccount is a well-formed key the fake does not know.
func otherServiceAccount(t *testing.T, tokenURL string) []byte {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	b, _ := json.Marshal(map[string]string{
		"type": "service_account", "client_email": "rbm-agent@bubbled-test.iam.gserviceaccount.com",
		"private_key_id": "x", "private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"token_uri": tokenURL,
	})
	return b
}

func TestRBMWrongServiceAccountIsErrAuth(t *testing.T) {
	fake := startRBMFake(t, rbmfake.Options{})
	fake.SetCapabilities(alice)
	p, err := NewRBM(RBMConfig{AgentID: fake.AgentID(), ServiceAccountKey: otherServiceAccount(t, fake.TokenURL()),
		BaseURL: fake.URL(), Clock: newFakeClock(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = p.Capability(context.Background(), alice)
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if r := fake.Rejections(); len(r) != 1 || !strings.Contains(r[0], "invalid_grant") {
		t.Fatalf("fake rejections = %q", r)
	}
}

func TestRBMWrongAgentIsPermanent(t *testing.T) {
	fake := startRBMFake(t, rbmfake.Options{})
	fake.SetCapabilities(alice)
	p, err := NewRBM(RBMConfig{AgentID: "someone_else", ServiceAccountKey: fake.ServiceAccountJSON(),
		BaseURL: fake.URL(), Clock: newFakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Send(context.Background(), alice, &OutboundMessage{EventID: "$e", Text: "x"})
	var apiErr *APIError
	if !errors.Is(err, ErrPermanent) || !errors.As(err, &apiErr) || apiErr.Code != "PERMISSION_DENIED" {
		t.Fatalf("err = %v, want ErrPermanent PERMISSION_DENIED", err)
	}
}

func TestNewRBMConfigErrors(t *testing.T) {
	fake := startRBMFake(t, rbmfake.Options{})
	keyFile := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(keyFile, fake.ServiceAccountJSON(), 0o600); err != nil {
		t.Fatal(err)
	}
	notSA, _ := json.Marshal(map[string]string{"type": "authorized_user"})
	badPEM, _ := json.Marshal(map[string]string{"type": "service_account", "client_email": "a@b", "private_key": "nope"})
	cases := []struct {
		name string
		cfg  RBMConfig
		want string // substring of the error; "" = no error
	}{
		{name: "key from file", cfg: RBMConfig{AgentID: "a", ServiceAccountFile: keyFile}},
		{name: "no agent", cfg: RBMConfig{ServiceAccountFile: keyFile}, want: "agent_id"},
		{name: "no key", cfg: RBMConfig{AgentID: "a"}, want: "service_account_file"},
		{name: "missing file", cfg: RBMConfig{AgentID: "a", ServiceAccountFile: keyFile + ".gone"}, want: "read RBM service account key"},
		{name: "not a service account", cfg: RBMConfig{AgentID: "a", ServiceAccountKey: notSA}, want: "service_account"},
		{name: "bad private key", cfg: RBMConfig{AgentID: "a", ServiceAccountKey: badPEM}, want: "not PEM"},
		{name: "relative base URL", cfg: RBMConfig{AgentID: "a", ServiceAccountFile: keyFile, BaseURL: "rcs.example"}, want: "base_url"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRBM(tc.cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
