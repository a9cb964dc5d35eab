package mms_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bubbled/bubbled/connectors/mms"
	"github.com/bubbled/bubbled/connectors/mms/mmscfake"
)

var fakeJPEG = append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, bytes.Repeat([]byte("pixels"), 5000)...)

func picture() mmscfake.Message {
	return mmscfake.Message{From: "+15551230001", To: []string{"+15550001111"}, Cc: []string{"+15551230002"},
		Subject: "Urlaub", Text: "Grüße aus Rom", Media: []mmscfake.Media{{Type: "image/jpeg", Name: "rom.jpg", Data: fakeJPEG}}}
}

func newClient(t *testing.T, cfg mms.ClientConfig) *mms.Client {
	t.Helper()
	c, err := mms.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestFetchAndNotify runs the receive exchange against the fake MMSC: the
// push decodes to a notification, its location fetches the picture, and
// the m-notifyresp-ind reaches the fake, which checks it.
func TestFetchAndNotify(t *testing.T) {
	cases := map[string]struct {
		opts mmscfake.Options
		cfg  func(f *mmscfake.Server) mms.ClientConfig
	}{
		"direct": {mmscfake.Options{UserAgent: "bubbled-test/1"}, func(f *mmscfake.Server) mms.ClientConfig {
			return mms.ClientConfig{MMSC: f.URL(), UserAgent: "bubbled-test/1", UAProf: "http://example.invalid/p.xml"}
		}},
		"carrier proxy with internal host": {mmscfake.Options{Host: "promms"}, func(f *mmscfake.Server) mms.ClientConfig {
			return mms.ClientConfig{MMSC: f.URL(), Proxy: f.Addr()}
		}},
		"bound to lo": {mmscfake.Options{}, func(f *mmscfake.Server) mms.ClientConfig {
			return mms.ClientConfig{MMSC: f.URL(), Interface: "lo"}
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := mmscfake.Start(tc.opts)
			defer f.Close()
			c := newClient(t, tc.cfg(f))
			push, loc := f.Hold(picture())
			wsp, err := mms.DecodePush(push)
			if err != nil {
				t.Fatal(err)
			}
			n, err := mms.Decode(wsp.Body)
			if err != nil || n.Type != mms.NotificationInd || n.ContentLocation != loc || mms.Number(n.From) != "+15551230001" {
				t.Fatalf("notification %+v, %v", n, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p, err := c.Fetch(ctx, n.ContentLocation)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Parts) != 3 || p.Parts[0].ContentType.Media != mms.MediaSMIL || !bytes.Equal(p.Parts[1].Data, f.Content(loc, 0)) ||
				p.Parts[2].Text() != "Grüße aus Rom" || len(p.Cc) != 1 || p.Subject != "Urlaub" {
				t.Errorf("retrieve-conf %+v", p)
			}
			if n.Size < uint64(len(fakeJPEG)) {
				t.Errorf("notification size %d is below the picture's %d bytes", n.Size, len(fakeJPEG))
			}
			if _, err := c.Post(ctx, &mms.PDU{Type: mms.NotifyRespInd, TransactionID: n.TransactionID, Status: mms.StatusRetrieved}); err != nil {
				t.Fatal(err)
			}
			got := f.NotifyResps()
			if len(got) != 1 || got[0].TransactionID != n.TransactionID || got[0].Status != byte(mms.StatusRetrieved) {
				t.Errorf("notify responses %+v", got)
			}
			if pr := f.Problems(); len(pr) > 0 {
				t.Errorf("fake MMSC found problems: %q", pr)
			}
			if tc.opts.Host != "" && f.Proxied() != 2 {
				t.Errorf("%d requests came through the proxy, want 2", f.Proxied())
			}
		})
	}
}

func TestFetchErrors(t *testing.T) {
	f := mmscfake.Start(mmscfake.Options{UserAgent: "Carrier/1"})
	defer f.Close()
	ctx := context.Background()
	_, loc := f.Hold(picture())

	_, err := newClient(t, mms.ClientConfig{MMSC: f.URL()}).Fetch(ctx, loc)
	var he *mms.HTTPError
	if !errors.As(err, &he) || he.Code != 412 || he.Temporary() || !strings.Contains(err.Error(), "network.mms.user_agent") {
		t.Errorf("wrong user agent: %v", err)
	}
	c := newClient(t, mms.ClientConfig{MMSC: f.URL(), UserAgent: "Carrier/1"})
	f.Expire(loc)
	if _, err := c.Fetch(ctx, loc); !errors.Is(err, mms.ErrExpired) {
		t.Errorf("expired: %v", err)
	}
	small := newClient(t, mms.ClientConfig{MMSC: f.URL(), UserAgent: "Carrier/1", MaxSize: 1000})
	_, loc2 := f.Hold(picture())
	if _, err := small.Fetch(ctx, loc2); err == nil || !strings.Contains(err.Error(), "max_size") {
		t.Errorf("oversized: %v", err)
	}
	bad := newClient(t, mms.ClientConfig{MMSC: f.URL(), Interface: "nosuchif0"})
	if _, err := bad.Fetch(ctx, loc2); err == nil || !strings.Contains(err.Error(), "nosuchif0") || !strings.Contains(err.Error(), "network.mms.interface") {
		t.Errorf("missing interface: %v", err)
	}
	for _, cfg := range []mms.ClientConfig{{MMSC: "mmsc.example"}, {MMSC: "http://x/", Proxy: "http://"}} {
		if _, err := mms.NewClient(cfg); err == nil {
			t.Errorf("NewClient(%+v) accepted", cfg)
		}
	}
}

// TestSendReqToFake posts bubbled's m-send-req for a group; the fake
// decodes it with its own decoder, checks it and answers m-send-conf.
func TestSendReqToFake(t *testing.T) {
	f := mmscfake.Start(mmscfake.Options{})
	defer f.Close()
	c := newClient(t, mms.ClientConfig{MMSC: f.URL()})
	req := &mms.PDU{Type: mms.SendReq, TransactionID: "T42", To: []string{mms.PLMN("+15551230001"), mms.PLMN("+15551230002"), mms.PLMN("+15551230003")},
		ContentType: mms.ContentType{Media: mms.MediaRelated, Type: mms.MediaSMIL, Start: "<smil>"},
		Parts: []mms.Part{
			{ContentType: mms.ContentType{Media: mms.MediaSMIL}, ContentID: "smil", Data: []byte("<smil/>")},
			{ContentType: mms.ContentType{Media: "image/jpeg", Name: "a.jpg"}, ContentID: "img", Data: fakeJPEG},
			{ContentType: mms.ContentType{Media: mms.MediaText, Charset: mms.CharsetUTF8}, ContentID: "txt", Data: []byte("hi all")},
		}}
	conf, err := c.Post(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if conf.Type != mms.SendConf || conf.ResponseStatus != mms.ResponseOK || conf.MessageID == "" || conf.TransactionID != "T42" {
		t.Errorf("send-conf %+v", conf)
	}
	sent := f.SendReqs()
	if len(sent) != 1 || len(sent[0].To) != 3 || len(sent[0].Parts) != 3 || !bytes.Equal(sent[0].Parts[1].Data, fakeJPEG) {
		t.Fatalf("fake recorded %+v", sent)
	}
	f.Refuse(0xE5, "content not accepted")
	conf, err = c.Post(context.Background(), req)
	if err != nil || conf.ResponseStatus != 0xE5 || conf.ResponseStatus.Transient() || conf.ResponseText != "content not accepted" {
		t.Errorf("refused send-conf %+v, %v", conf, err)
	}
	if pr := f.Problems(); len(pr) > 0 {
		t.Errorf("fake MMSC found problems: %q", pr)
	}
	// A send-req the fake must reject: From is not the insert token.
	req.FromInsert, req.From = false, mms.PLMN("+15550001111")
	if _, err := c.Post(context.Background(), req); err == nil && len(f.Problems()) == 0 {
		t.Error("fake accepted a send-req with an explicit From")
	}
}
