package rcs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/bubbled/bubbled/connectors/rcs/maapfake"
)

func TestMaaPCapabilityVocabulary(t *testing.T) {
	fake := startMaaPFake(t, maapfake.Options{})
	p := newTestMaaP(t, fake, newFakeClock())
	cases := []struct {
		name      string
		caps      []string
		reachable bool
	}{
		{name: "chatbot communication", caps: []string{"chatBotCommunication"}, reachable: true},
		{name: "plain chat", caps: []string{"chat", "fileTransfer"}, reachable: true},
		{name: "RCS without chat", caps: []string{"videoCall"}},
		{name: "empty list", caps: []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake.SetCapabilities(bob, tc.caps...)
			ok, features, err := p.Capability(context.Background(), bob)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.reachable || !slices.Equal(features, tc.caps) {
				t.Fatalf("got %v %q, want %v %q", ok, features, tc.reachable, tc.caps)
			}
		})
	}
}

func TestMaaPWireFormat(t *testing.T) {
	fake := startMaaPFake(t, maapfake.Options{})
	fake.SetCapabilities(alice, "chat")
	p := newTestMaaP(t, fake, newFakeClock())
	ctx := context.Background()

	id, err := p.Send(ctx, alice, &OutboundMessage{EventID: "$f", File: &FileRef{
		URL: "https://media.example.org/a.pdf", Name: "a.pdf", MIMEType: "application/pdf", Size: 99,
		ThumbnailURL: "https://media.example.org/a.png"}})
	if err != nil {
		t.Fatalf("send file: %v (fake: %q)", err, fake.Rejections())
	}
	m := fake.Messages()
	if len(m) != 1 || m[0].MsgID != id || m[0].FileName != "a.pdf" || m[0].FileMIMEType != "application/pdf" ||
		m[0].FileSize != 99 || m[0].ThumbnailURL != "https://media.example.org/a.png" {
		t.Fatalf("fake recorded %+v", m)
	}
	for _, on := range []bool{true, false} {
		if err := p.SendTyping(ctx, alice, on); err != nil {
			t.Fatalf("typing %v: %v (fake: %q)", on, err, fake.Rejections())
		}
	}
	if got := fake.Typing(); !slices.Equal(got, []maapfake.Typing{{Contact: alice, State: "active"}, {Contact: alice, State: "idle"}}) {
		t.Fatalf("typing = %+v", got)
	}

	// Read receipt for a message the user sent.
	_, userMsg := fake.UserMessage(alice, "hi bot")
	if err := p.SendRead(ctx, alice, userMsg); err != nil {
		t.Fatalf("read: %v (fake: %q)", err, fake.Rejections())
	}
	if err := p.SendRead(ctx, alice, "nosuchmsg"); !errors.Is(err, ErrPermanent) || errors.Is(err, ErrNotRCS) {
		t.Fatalf("read of unknown message: %v, want ErrPermanent", err)
	}
	// Revoke: pending works, delivered is refused.
	if err := p.Revoke(ctx, alice, id); err != nil {
		t.Fatalf("revoke pending: %v (fake: %q)", err, fake.Rejections())
	}
	id2, err := p.Send(ctx, alice, &OutboundMessage{EventID: "$g", Text: "late"})
	if err != nil {
		t.Fatal(err)
	}
	fake.MarkDelivered(id2)
	if err := p.Revoke(ctx, alice, id2); !errors.Is(err, ErrPermanent) {
		t.Fatalf("revoke delivered: %v, want ErrPermanent", err)
	}
	want := []maapfake.StatusUpdate{{MsgID: userMsg, Status: "displayed"}, {MsgID: id, Status: "cancelled"}}
	if got := fake.StatusUpdates(); !slices.Equal(got, want) {
		t.Fatalf("status updates = %+v, want %+v", got, want)
	}
}

func TestMaaPWrongClientSecretIsErrAuth(t *testing.T) {
	fake := startMaaPFake(t, maapfake.Options{})
	fake.SetCapabilities(alice, "chat")
	for _, inBody := range []bool{false, true} {
		p, err := NewMaaP(MaaPConfig{BotID: fake.BotID(), BaseURL: fake.URL(), TokenURL: fake.TokenURL(),
			ClientID: fake.ClientID(), ClientSecret: "wrong", CredentialsInBody: inBody, Clock: newFakeClock()})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := p.Capability(context.Background(), alice); !errors.Is(err, ErrAuth) {
			t.Fatalf("in body %v: err = %v, want ErrAuth", inBody, err)
		}
	}
	// The right secret in the body works too.
	p, err := NewMaaP(MaaPConfig{BotID: fake.BotID(), BaseURL: fake.URL(), TokenURL: fake.TokenURL(),
		ClientID: fake.ClientID(), ClientSecret: fake.ClientSecret(), CredentialsInBody: true, Clock: newFakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := p.Capability(context.Background(), alice); err != nil || !ok {
		t.Fatalf("credentials in body: %v %v", ok, err)
	}
}

func TestMaaPWrongBotIsPermanent(t *testing.T) {
	fake := startMaaPFake(t, maapfake.Options{})
	fake.SetCapabilities(alice, "chat")
	p, err := NewMaaP(MaaPConfig{BotID: "other@bots", BaseURL: fake.URL(), TokenURL: fake.TokenURL(),
		ClientID: fake.ClientID(), ClientSecret: fake.ClientSecret(), Clock: newFakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Send(context.Background(), alice, &OutboundMessage{EventID: "$e", Text: "x"})
	var apiErr *APIError
	if !errors.Is(err, ErrPermanent) || !errors.As(err, &apiErr) || apiErr.Code != "POL1001" {
		t.Fatalf("err = %v, want ErrPermanent POL1001", err)
	}
}

func TestNewMaaPConfigErrors(t *testing.T) {
	good := MaaPConfig{BotID: "b", BaseURL: "https://maap.example", TokenURL: "https://maap.example/token", ClientID: "c", ClientSecret: "s"}
	cases := []struct {
		name   string
		mutate func(c *MaaPConfig)
		want   string
	}{
		{name: "complete", mutate: func(c *MaaPConfig) {}},
		{name: "no bot", mutate: func(c *MaaPConfig) { c.BotID = "" }, want: "bot_id"},
		{name: "no secret", mutate: func(c *MaaPConfig) { c.ClientSecret = "" }, want: "client_secret"},
		{name: "no base URL", mutate: func(c *MaaPConfig) { c.BaseURL = "" }, want: "base_url"},
		{name: "relative token URL", mutate: func(c *MaaPConfig) { c.TokenURL = "/token" }, want: "token_url"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mutate(&cfg)
			_, err := NewMaaP(cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
