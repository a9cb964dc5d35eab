package modemsim

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/warthog618/sms/encoding/tpdu"
)

// WAP push port numbers (16-bit application port addressing, 3GPP TS
// 23.040 §9.2.3.24.4): WDP destination 2948 (connectionless WSP push),
// source 9200.
const (
	wapPushPort   = 2948
	wapSourcePort = 9200
	// wapPartData is what an 8-bit part holds after a UDH of concat16 +
	// port16 (13 octets with UDHL) in 140 octets of user data.
	wapPartData = 140 - 13
)

// wapRef hands out 16-bit concatenation references for WAP pushes.
var wapRef atomic.Uint32

// WAPPushPDUs builds the SMS-DELIVER PDUs (hex, with SMSC field) that carry
// a WSP push (e.g. from connectors/mms.EncodePush) from `from` the way
// MMSCs send them: DCS 0x04 (8-bit), UDH with a 16-bit concatenation
// reference (IE 0x08) and 16-bit ports 2948/9200 (IE 0x05), 127 payload
// octets per part. A push that fits one part still gets the concatenation
// IE (1 of 1), as real notifications do. Tests deliver them with
// DeliverPDU, in any order or twice.
func (s *Sim) WAPPushPDUs(from string, push []byte) ([]string, error) {
	if len(push) == 0 {
		return nil, errors.New("build WAP push: empty push")
	}
	total := (len(push) + wapPartData - 1) / wapPartData
	if total > 255 {
		return nil, fmt.Errorf("build WAP push: %d bytes need %d parts (at most 255)", len(push), total)
	}
	oa, err := addressFor(from)
	if err != nil {
		return nil, fmt.Errorf("build WAP push: %w", err)
	}
	ref := uint16(wapRef.Add(1))
	scts := time.Now().Truncate(time.Second)
	out := make([]string, 0, total)
	for i := 0; i < total; i++ {
		chunk := push[i*wapPartData : min(len(push), (i+1)*wapPartData)]
		t, err := tpdu.NewDeliver(tpdu.WithOA(oa), deliverFields{scts: scts})
		if err != nil {
			return nil, fmt.Errorf("build WAP push: %w", err)
		}
		t.SetDCS(0x04)
		t.SetUDH(tpdu.UserDataHeader{
			{ID: 0x08, Data: []byte{byte(ref >> 8), byte(ref), byte(total), byte(i + 1)}},
			{ID: 0x05, Data: []byte{wapPushPort >> 8, wapPushPort & 0xFF, wapSourcePort >> 8, wapSourcePort & 0xFF}},
		})
		t.SetUD(append([]byte(nil), chunk...))
		s.mu.Lock()
		m, err := s.mtFromTPDU(t)
		s.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("build WAP push part %d/%d: %w", i+1, total, err)
		}
		out = append(out, m.hex)
	}
	return out, nil
}

// DeliverWAPPush plays the network delivering a WSP push in concatenated
// 8-bit SMS (see WAPPushPDUs), every part routed per +CNMI like Deliver.
func (s *Sim) DeliverWAPPush(from string, push []byte) error {
	parts, err := s.WAPPushPDUs(from, push)
	if err != nil {
		return err
	}
	for i, p := range parts {
		if err := s.DeliverPDU(p); err != nil {
			return fmt.Errorf("deliver WAP push part %d/%d: %w", i+1, len(parts), err)
		}
	}
	return nil
}
