package rcs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/bubbled/bubbled/connectors/phone"
)

// errMalformed marks a payload that is not valid JSON or lacks a field the
// event needs. The webhook answers 400.
var errMalformed = errors.New("malformed RCS webhook payload")

// errIgnored marks a well-formed payload of a kind bubbled does not handle
// (capability callbacks, file upload status, ...). The webhook answers 200
// and drops it.
var errIgnored = errors.New("RCS webhook event of a kind bubbled does not handle")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, args...))
}

// flexInt accepts a JSON number or a string of digits (proto3 JSON writes
// int64 as a string).
type flexInt int64

func (n *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not an integer: %s", b)
	}
	*n = flexInt(v)
	return nil
}

// decodeStrict decodes one JSON value and rejects trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// parseTime reads an RFC 3339 time, falling back to def.
func parseTime(s string, def time.Time) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t
	}
	return def
}

// rbmFileInfo is RBM's FileInfo.
type rbmFileInfo struct {
	MimeType      string  `json:"mimeType"`
	FileSizeBytes flexInt `json:"fileSizeBytes"`
	FileURI       string  `json:"fileUri"`
	FileName      string  `json:"fileName"`
}

// rbmInbound is the union of RBM's UserMessage and UserEvent (the decoded
// message.data of a webhook envelope).
type rbmInbound struct {
	SenderPhoneNumber string `json:"senderPhoneNumber"`
	AgentID           string `json:"agentId"`
	MessageID         string `json:"messageId"`
	EventID           string `json:"eventId"`
	EventType         string `json:"eventType"`
	SendTime          string `json:"sendTime"`

	Text     *string `json:"text"`
	UserFile *struct {
		Payload   rbmFileInfo  `json:"payload"`
		Thumbnail *rbmFileInfo `json:"thumbnail"`
	} `json:"userFile"`
	Location *struct {
		Latitude  float64 `json:"latitude"`
		Longitude float64 `json:"longitude"`
	} `json:"location"`
	SuggestionResponse *struct {
		PostbackData string `json:"postbackData"`
		Text         string `json:"text"`
	} `json:"suggestionResponse"`
}

// parseRBM turns the decoded data of an RBM webhook into an Event. It also
// returns the payload's agentId so the caller can reject other agents.
// The event's Key is "message:<messageId>" or "event:<eventId>".
func parseRBM(data []byte, received time.Time) (Event, string, error) {
	var in rbmInbound
	if err := decodeStrict(data, &in); err != nil {
		return nil, "", malformed("RBM data is not a UserMessage/UserEvent JSON object: %v", err)
	}
	meta := EventMeta{Provider: "rbm", Time: parseTime(in.SendTime, received)}
	if in.EventType == "" && in.Text == nil && in.UserFile == nil && in.Location == nil && in.SuggestionResponse == nil {
		return nil, in.AgentID, fmt.Errorf("%w: RBM data with neither eventType nor message content", errIgnored)
	}
	if !ValidNumber(in.SenderPhoneNumber) {
		return nil, in.AgentID, malformed("RBM senderPhoneNumber %q is not an E.164 number", phone.Mask(in.SenderPhoneNumber))
	}
	meta.Sender = in.SenderPhoneNumber
	if in.EventType != "" {
		if in.EventID == "" {
			return nil, in.AgentID, malformed("RBM %s event without eventId", in.EventType)
		}
		meta.Key = "event:" + in.EventID
		meta.MessageID = in.MessageID
		needMsg := func() error {
			if in.MessageID == "" {
				return malformed("RBM %s event without messageId", in.EventType)
			}
			return nil
		}
		switch in.EventType {
		case "DELIVERED":
			if err := needMsg(); err != nil {
				return nil, in.AgentID, err
			}
			return &DeliveredEvent{meta}, in.AgentID, nil
		case "READ":
			if err := needMsg(); err != nil {
				return nil, in.AgentID, err
			}
			return &ReadEvent{meta}, in.AgentID, nil
		case "IS_TYPING":
			meta.MessageID = ""
			return &TypingEvent{EventMeta: meta, Active: true}, in.AgentID, nil
		case "UNSUBSCRIBE":
			meta.MessageID = ""
			return &UnsubscribeEvent{meta}, in.AgentID, nil
		case "SUBSCRIBE":
			meta.MessageID = ""
			return &SubscribeEvent{meta}, in.AgentID, nil
		}
		return nil, in.AgentID, fmt.Errorf("%w: RBM eventType %q", errIgnored, in.EventType)
	}
	if in.MessageID == "" {
		return nil, in.AgentID, malformed("RBM user message without messageId")
	}
	meta.Key = "message:" + in.MessageID
	meta.MessageID = in.MessageID
	ev := &MessageEvent{EventMeta: meta}
	switch {
	case in.Text != nil:
		ev.Text = *in.Text
	case in.UserFile != nil:
		p := in.UserFile.Payload
		if p.FileURI == "" {
			return nil, in.AgentID, malformed("RBM userFile without payload.fileUri")
		}
		ev.File = &InboundFile{URL: p.FileURI, Name: p.FileName, MIMEType: p.MimeType, Size: int64(p.FileSizeBytes)}
		if t := in.UserFile.Thumbnail; t != nil {
			ev.File.ThumbnailURL = t.FileURI
		}
	case in.Location != nil:
		ev.Location = &Location{Latitude: in.Location.Latitude, Longitude: in.Location.Longitude}
	case in.SuggestionResponse != nil:
		ev.Text = in.SuggestionResponse.Text
		if ev.Text == "" {
			ev.Text = in.SuggestionResponse.PostbackData
		}
	}
	return ev, in.AgentID, nil
}

// maapPos accepts {"latitude":..,"longitude":..} or "lat lon" / "lat,lon".
type maapPos struct{ lat, lon float64 }

func (p *maapPos) UnmarshalJSON(b []byte) error {
	var obj struct {
		Latitude  *float64 `json:"latitude"`
		Longitude *float64 `json:"longitude"`
	}
	if err := json.Unmarshal(b, &obj); err == nil && obj.Latitude != nil && obj.Longitude != nil {
		p.lat, p.lon = *obj.Latitude, *obj.Longitude
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("pos is neither an object nor a string")
	}
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })
	if len(f) != 2 {
		return fmt.Errorf("pos %q is not \"<lat> <lon>\"", s)
	}
	var err1, err2 error
	p.lat, err1 = strconv.ParseFloat(f[0], 64)
	p.lon, err2 = strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("pos %q is not two numbers", s)
	}
	return nil
}

// maapInbound is a MaaP webhook request body.
type maapInbound struct {
	Event      string `json:"event"`
	RCSMessage struct {
		MsgID       string  `json:"msgId"`
		TextMessage *string `json:"textMessage"`
		FileMessage *struct {
			FileURL      string  `json:"fileUrl"`
			FileName     string  `json:"fileName"`
			FileMIMEType string  `json:"fileMIMEType"`
			FileSize     flexInt `json:"fileSize"`
			ThumbnailURL string  `json:"thumbnailUrl"`
		} `json:"fileMessage"`
		GeolocationPushMessage *struct {
			Pos   maapPos `json:"pos"`
			Label string  `json:"label"`
		} `json:"geolocationPushMessage"`
		SuggestedResponse *struct {
			Response struct {
				Reply *struct {
					DisplayText string `json:"displayText"`
					Postback    struct {
						Data string `json:"data"`
					} `json:"postback"`
				} `json:"reply"`
				Action *struct {
					DisplayText string `json:"displayText"`
					Postback    struct {
						Data string `json:"data"`
					} `json:"postback"`
				} `json:"action"`
			} `json:"response"`
		} `json:"suggestedResponse"`
		IsTyping  string `json:"isTyping"`
		Status    string `json:"status"`
		Timestamp string `json:"timestamp"`
	} `json:"RCSMessage"`
	MessageContact struct {
		UserContact string `json:"userContact"`
	} `json:"messageContact"`
}

// maapNumber normalises a MaaP userContact ("+1…", "tel:+1…" or bare
// digits) to E.164.
func maapNumber(s string) (string, bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "tel:")
	if s != "" && s[0] != '+' {
		s = "+" + s
	}
	return s, ValidNumber(s)
}

// parseMaaP turns a MaaP webhook body into an Event. Its Key is
// "message:<msgId>" for user messages, "status:<msgId>:<status>" for
// status updates, and "" for typing (the caller keys those by a hash of
// the body).
func parseMaaP(body []byte, received time.Time) (Event, error) {
	var in maapInbound
	if err := decodeStrict(body, &in); err != nil {
		return nil, malformed("MaaP body is not an event JSON object: %v", err)
	}
	m := &in.RCSMessage
	switch in.Event {
	case "":
		return nil, malformed(`MaaP body without "event"`)
	case "message", "response", "isTyping", "messageStatus":
	default:
		return nil, fmt.Errorf("%w: MaaP event %q", errIgnored, in.Event)
	}
	sender, ok := maapNumber(in.MessageContact.UserContact)
	if !ok {
		return nil, malformed("MaaP messageContact.userContact %q is not an E.164 number", phone.Mask(in.MessageContact.UserContact))
	}
	meta := EventMeta{Provider: "maap", Sender: sender, Time: parseTime(m.Timestamp, received)}
	switch in.Event {
	case "isTyping":
		switch m.IsTyping {
		case "active":
			return &TypingEvent{EventMeta: meta, Active: true}, nil
		case "idle":
			return &TypingEvent{EventMeta: meta}, nil
		}
		return nil, malformed("MaaP isTyping %q is neither active nor idle", m.IsTyping)
	case "messageStatus":
		if m.MsgID == "" || m.Status == "" {
			return nil, malformed("MaaP messageStatus without msgId or status")
		}
		meta.MessageID = m.MsgID
		meta.Key = "status:" + m.MsgID + ":" + m.Status
		switch m.Status {
		case "delivered":
			return &DeliveredEvent{meta}, nil
		case "displayed":
			return &ReadEvent{meta}, nil
		case "failed":
			return &FailedEvent{EventMeta: meta, Reason: m.Status}, nil
		}
		return nil, fmt.Errorf("%w: MaaP message status %q", errIgnored, m.Status)
	}
	if m.MsgID == "" {
		return nil, malformed("MaaP %s without RCSMessage.msgId", in.Event)
	}
	meta.MessageID = m.MsgID
	meta.Key = "message:" + m.MsgID
	ev := &MessageEvent{EventMeta: meta}
	switch {
	case m.TextMessage != nil:
		ev.Text = *m.TextMessage
	case m.FileMessage != nil:
		f := m.FileMessage
		if f.FileURL == "" {
			return nil, malformed("MaaP fileMessage without fileUrl")
		}
		ev.File = &InboundFile{URL: f.FileURL, Name: f.FileName, MIMEType: f.FileMIMEType, Size: int64(f.FileSize), ThumbnailURL: f.ThumbnailURL}
	case m.GeolocationPushMessage != nil:
		g := m.GeolocationPushMessage
		ev.Location = &Location{Latitude: g.Pos.lat, Longitude: g.Pos.lon, Label: g.Label}
	case m.SuggestedResponse != nil:
		r := m.SuggestedResponse.Response
		switch {
		case r.Reply != nil:
			ev.Text = firstNonEmpty(r.Reply.DisplayText, r.Reply.Postback.Data)
		case r.Action != nil:
			ev.Text = firstNonEmpty(r.Action.DisplayText, r.Action.Postback.Data)
		}
	default:
		return nil, fmt.Errorf("%w: MaaP %s with no text, file, location or suggestion response", errIgnored, in.Event)
	}
	return ev, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
