package rcs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

var received = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestParseRBM(t *testing.T) {
	sent := time.Date(2026, 11, 25, 11, 59, 58, 500000000, time.UTC)
	meta := func(key, msg string) EventMeta {
		return EventMeta{Provider: "rbm", Key: key, Sender: alice, MessageID: msg, Time: sent}
	}
	const head = `{"senderPhoneNumber":"+15551230001","agentId":"ag","sendTime":"2026-11-25T11:59:58.5Z",`
	cases := []struct {
		name string
		in   string
		want Event
		err  error
	}{
		{name: "text", in: head + `"messageId":"m1","text":"hi"}`,
			want: &MessageEvent{EventMeta: meta("message:m1", "m1"), Text: "hi"}},
		{name: "file with string size", in: head + `"messageId":"m2","userFile":{"payload":{"mimeType":"image/png","fileSizeBytes":"2048","fileName":"a.png","fileUri":"https://x/a"},"thumbnail":{"fileUri":"https://x/t"}}}`,
			want: &MessageEvent{EventMeta: meta("message:m2", "m2"), File: &InboundFile{URL: "https://x/a", Name: "a.png", MIMEType: "image/png", Size: 2048, ThumbnailURL: "https://x/t"}}},
		{name: "location", in: head + `"messageId":"m3","location":{"latitude":51.5,"longitude":-0.12}}`,
			want: &MessageEvent{EventMeta: meta("message:m3", "m3"), Location: &Location{Latitude: 51.5, Longitude: -0.12}}},
		{name: "suggestion response", in: head + `"messageId":"m4","suggestionResponse":{"postbackData":"yes_pb","text":"Yes","type":"REPLY"}}`,
			want: &MessageEvent{EventMeta: meta("message:m4", "m4"), Text: "Yes"}},
		{name: "delivered", in: head + `"eventType":"DELIVERED","eventId":"e1","messageId":"out1"}`,
			want: &DeliveredEvent{meta("event:e1", "out1")}},
		{name: "read", in: head + `"eventType":"READ","eventId":"e2","messageId":"out1"}`,
			want: &ReadEvent{meta("event:e2", "out1")}},
		{name: "typing", in: head + `"eventType":"IS_TYPING","eventId":"e3"}`,
			want: &TypingEvent{EventMeta: meta("event:e3", ""), Active: true}},
		{name: "unsubscribe", in: head + `"eventType":"UNSUBSCRIBE","eventId":"e4"}`,
			want: &UnsubscribeEvent{meta("event:e4", "")}},
		{name: "no sendTime uses arrival", in: `{"senderPhoneNumber":"+15551230001","messageId":"m5","text":""}`,
			want: &MessageEvent{EventMeta: EventMeta{Provider: "rbm", Key: "message:m5", Sender: alice, MessageID: "m5", Time: received}}},
		{name: "unknown event type", in: head + `"eventType":"SOMETHING_NEW","eventId":"e5"}`, err: errIgnored},
		{name: "no content", in: `{"agentId":"ag","requestId":"r"}`, err: errIgnored},
		{name: "delivered without messageId", in: head + `"eventType":"DELIVERED","eventId":"e6"}`, err: errMalformed},
		{name: "event without eventId", in: head + `"eventType":"READ","messageId":"x"}`, err: errMalformed},
		{name: "message without messageId", in: head + `"text":"x"}`, err: errMalformed},
		{name: "national sender", in: `{"senderPhoneNumber":"07700900123","messageId":"m","text":"x"}`, err: errMalformed},
		{name: "file without uri", in: head + `"messageId":"m6","userFile":{"payload":{}}}`, err: errMalformed},
		{name: "wrong type", in: head + `"messageId":7,"text":"x"}`, err: errMalformed},
		{name: "trailing data", in: head + `"messageId":"m","text":"x"} {}`, err: errMalformed},
		{name: "not JSON", in: `hello`, err: errMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, _, err := parseRBM([]byte(tc.in), received)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if !reflect.DeepEqual(ev, tc.want) {
				t.Fatalf("got %#v\nwant %#v", ev, tc.want)
			}
		})
	}
}

func TestParseMaaP(t *testing.T) {
	ts := time.Date(2017, 9, 26, 1, 33, 20, 315000000, time.UTC)
	meta := func(key, msg string) EventMeta {
		return EventMeta{Provider: "maap", Key: key, Sender: "+14251234567", MessageID: msg, Time: ts}
	}
	const contact = `"messageContact":{"userContact":"+14251234567"}`
	cases := []struct {
		name string
		in   string
		want Event
		err  error
	}{
		{name: "spec example text", in: `{"RCSMessage":{"msgId":"Xs8CI3tdf","textMessage":"hello world","timestamp":"2017-09-26T01:33:20.315Z"},` + contact + `,"event":"message"}`,
			want: &MessageEvent{EventMeta: meta("message:Xs8CI3tdf", "Xs8CI3tdf"), Text: "hello world"}},
		{name: "bare digits contact", in: `{"RCSMessage":{"msgId":"a","textMessage":"x","timestamp":"2017-09-26T01:33:20.315Z"},"messageContact":{"userContact":"14251234567"},"event":"message"}`,
			want: &MessageEvent{EventMeta: meta("message:a", "a"), Text: "x"}},
		{name: "tel URI contact", in: `{"RCSMessage":{"msgId":"a","textMessage":"x","timestamp":"2017-09-26T01:33:20.315Z"},"messageContact":{"userContact":"tel:+14251234567"},"event":"message"}`,
			want: &MessageEvent{EventMeta: meta("message:a", "a"), Text: "x"}},
		{name: "geolocation object", in: `{"RCSMessage":{"msgId":"g","geolocationPushMessage":{"pos":{"latitude":1.5,"longitude":2.5},"label":"Home"},"timestamp":"2017-09-26T01:33:20.315Z"},` + contact + `,"event":"message"}`,
			want: &MessageEvent{EventMeta: meta("message:g", "g"), Location: &Location{Latitude: 1.5, Longitude: 2.5, Label: "Home"}}},
		{name: "geolocation string", in: `{"RCSMessage":{"msgId":"g","geolocationPushMessage":{"pos":"1.5 2.5"},"timestamp":"2017-09-26T01:33:20.315Z"},` + contact + `,"event":"message"}`,
			want: &MessageEvent{EventMeta: meta("message:g", "g"), Location: &Location{Latitude: 1.5, Longitude: 2.5}}},
		{name: "suggestion reply", in: `{"RCSMessage":{"msgId":"r","suggestedResponse":{"response":{"reply":{"displayText":"Yes","postback":{"data":"pb"}}}},"timestamp":"2017-09-26T01:33:20.315Z"},` + contact + `,"event":"response"}`,
			want: &MessageEvent{EventMeta: meta("message:r", "r"), Text: "Yes"}},
		{name: "status displayed", in: `{"RCSMessage":{"msgId":"o","status":"displayed","timestamp":"2017-09-26T01:33:20.315Z"},` + contact + `,"event":"messageStatus"}`,
			want: &ReadEvent{meta("status:o:displayed", "o")}},
		{name: "typing idle", in: `{"RCSMessage":{"isTyping":"idle","timestamp":"2017-09-26T01:33:20.315Z"},` + contact + `,"event":"isTyping"}`,
			want: &TypingEvent{EventMeta: meta("", "")}},
		{name: "status sent ignored", in: `{"RCSMessage":{"msgId":"o","status":"sent"},` + contact + `,"event":"messageStatus"}`, err: errIgnored},
		{name: "alias ignored", in: `{"event":"alias"}`, err: errIgnored},
		{name: "no event", in: `{"RCSMessage":{"msgId":"a","textMessage":"x"},` + contact + `}`, err: errMalformed},
		{name: "message without msgId", in: `{"RCSMessage":{"textMessage":"x"},` + contact + `,"event":"message"}`, err: errMalformed},
		{name: "bad typing state", in: `{"RCSMessage":{"isTyping":"maybe"},` + contact + `,"event":"isTyping"}`, err: errMalformed},
		{name: "bad pos", in: `{"RCSMessage":{"msgId":"g","geolocationPushMessage":{"pos":"north"}},` + contact + `,"event":"message"}`, err: errMalformed},
		{name: "no contact", in: `{"RCSMessage":{"msgId":"a","textMessage":"x"},"event":"message"}`, err: errMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := parseMaaP([]byte(tc.in), received)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if !reflect.DeepEqual(ev, tc.want) {
				t.Fatalf("got %#v\nwant %#v", ev, tc.want)
			}
		})
	}
}

// TestParseFixtures parses the documented example payloads in testdata/.
func TestParseFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var ev Event
			if filepath.Base(f)[:4] == "rbm_" {
				ev, _, err = parseRBM(b, received)
			} else {
				ev, err = parseMaaP(b, received)
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if !ValidNumber(ev.Meta().Sender) {
				t.Fatalf("sender %q", ev.Meta().Sender)
			}
		})
	}
}
