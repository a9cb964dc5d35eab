package main

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWaitMessage(t *testing.T) {
	cases := []struct {
		name     string
		before   []seenMessage // recorded before mark
		after    []seenMessage // recorded after mark, while waiting
		match    func(seenMessage) bool
		wantBody string
		wantErr  error
	}{
		{
			name:     "a later match is found",
			after:    []seenMessage{{sender: botMXID, body: "Hello"}, {sender: botMXID, body: "Logged in: …"}},
			match:    func(m seenMessage) bool { return m.body == "Logged in: …" },
			wantBody: "Logged in: …",
		},
		{
			name:    "a match before the mark does not count",
			before:  []seenMessage{{sender: botMXID, body: "Logged in: old"}},
			match:   func(m seenMessage) bool { return m.sender == botMXID },
			wantErr: errTimeout,
		},
		{
			name:    "no match times out",
			after:   []seenMessage{{sender: "@sms_1:localhost", body: "other"}},
			match:   func(m seenMessage) bool { return m.sender == botMXID },
			wantErr: errTimeout,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := &matrixUser{changed: make(chan struct{}, 1)}
			for _, m := range c.before {
				u.record(m)
			}
			mark := u.mark()
			done := make(chan struct{})
			go func() {
				defer close(done)
				for _, m := range c.after {
					time.Sleep(5 * time.Millisecond)
					u.record(m)
				}
			}()
			got, err := u.waitMessage(context.Background(), 300*time.Millisecond, mark, c.match)
			<-done
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			if got.body != c.wantBody {
				t.Errorf("body = %q, want %q", got.body, c.wantBody)
			}
		})
	}
}

func TestLoginFailed(t *testing.T) {
	cases := []struct {
		name string
		body string
		want bool
	}{
		{"success", "Logged in: SMS to +1 555-000-1111 now arrive here", false},
		{"start failed", "Failed to start login: open modem sim0: no such file", true},
		{"login failed", "Login failed: the SIM refused the PIN", true},
		{"another login running", "You already have an ongoing login. You can use `cancel` to cancel it.", true},
		{"asks for the PIN", "The SIM is locked. Enter its PIN", true},
		{"unrelated notice", "Hello, I'm a SMS bridge bot.", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := loginFailed(c.body); got != c.want {
				t.Errorf("loginFailed(%q) = %v, want %v", c.body, got, c.want)
			}
		})
	}
}
