package modemsim

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/warthog618/sms"
	"github.com/warthog618/sms/encoding/pdumode"
	"github.com/warthog618/sms/encoding/tpdu"
	"go.uber.org/zap"
)

// mtPDU is one mobile-terminated PDU (SMS-DELIVER or SMS-STATUS-REPORT).
type mtPDU struct {
	hex    string // SMSC field + TPDU, upper-case
	tlen   int    // TPDU length in octets
	report bool
	class  tpdu.MessageClass
}

type route int

const (
	routeStore       route = iota // store silently
	routeStoreNotify              // store and send +CMTI/+CDSI
	routeDirect                   // +CMT/+CDS
	routeDrop                     // status report with <ds>=0
)

// Deliver plays the network delivering an SMS from `from` ("+E164",
// national digits or an alphanumeric sender of up to 11 characters) with
// text. Long texts become concatenated SMS-DELIVER parts (GSM 7-bit default
// alphabet when possible, else UCS-2) with a fresh concatenation reference
// per message. Each part is routed per the current +CNMI (see package doc and
// README): stored silently (mt=0), stored with "+CMTI" (mt=1, class 2), or
// sent as "+CMT" (mt=2/3), which with +CSMS=1 must be acknowledged with
// AT+CNMA. Deliver does not wait for the host. It fails, delivering nothing,
// when the storage lacks room for the parts that must be stored
// (ErrStoreFull), the modem is unplugged (ErrUnplugged) or the SIM is locked
// (ErrSIMLocked).
func (s *Sim) Deliver(from, text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reachableLocked(); err != nil {
		return fmt.Errorf("deliver SMS: %w", err)
	}
	parts, err := s.encodeDeliverLocked(from, text)
	if err != nil {
		return fmt.Errorf("deliver SMS: %w", err)
	}
	if err := s.routeLocked(parts); err != nil {
		return fmt.Errorf("deliver SMS: %w", err)
	}
	s.kickEngine()
	return nil
}

// DeliverPDU routes a raw mobile-terminated PDU (hex, with the SMSC field
// as in +CMT) like Deliver does. SMS-STATUS-REPORT PDUs are routed per <ds>.
func (s *Sim) DeliverPDU(hexPDU string) error {
	m, err := parseMT(hexPDU)
	if err != nil {
		return fmt.Errorf("deliver PDU: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reachableLocked(); err != nil {
		return fmt.Errorf("deliver PDU: %w", err)
	}
	if err := s.routeLocked([]mtPDU{m}); err != nil {
		return fmt.Errorf("deliver PDU: %w", err)
	}
	s.kickEngine()
	return nil
}

// StoreOnly puts the SMS-DELIVER part(s) of a message into storage as REC
// UNREAD without any indication, regardless of +CNMI or the SIM state: the
// messages that arrived while the host was not running.
func (s *Sim) StoreOnly(from, text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	parts, err := s.encodeDeliverLocked(from, text)
	if err != nil {
		return fmt.Errorf("store SMS: %w", err)
	}
	if free := len(s.slots) - s.usedLocked(); free < len(parts) {
		return fmt.Errorf("store SMS of %d parts with %d free slots: %w", len(parts), free, ErrStoreFull)
	}
	for _, p := range parts {
		if _, err := s.storeLocked(p); err != nil {
			return fmt.Errorf("store SMS: %w", err)
		}
	}
	return nil
}

// DeliverStatusReport plays the SMSC reporting on the submitted part whose
// "+CMGS: <mr>" was mr: it builds an SMS-STATUS-REPORT (TP-RA = the part's
// destination, TP-ST = status, e.g. 0x00 delivered, 0x30..0x3F / 0x40..0x7F
// failures per 3GPP TS 23.040 9.2.3.15) and routes it per <ds> of +CNMI:
// 0 dropped (returns nil), 1 "+CDS: <len>" (acknowledged with +CNMA when
// +CSMS=1), 2 stored with "+CDSI". It fails when no submitted part had mr.
func (s *Sim) DeliverStatusReport(mr int, status byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reachableLocked(); err != nil {
		return fmt.Errorf("deliver status report: %w", err)
	}
	var part *submitPart
	for i := len(s.submits) - 1; i >= 0; i-- {
		if s.submits[i].mr == mr {
			part = &s.submits[i]
			break
		}
	}
	if part == nil {
		return fmt.Errorf("deliver status report: no submitted part has TP-MR %d", mr)
	}
	var t tpdu.TPDU
	if err := t.SetSmsType(tpdu.SmsStatusReport); err != nil {
		return fmt.Errorf("deliver status report: %w", err)
	}
	t.FirstOctet |= tpdu.FoMMS // no more messages waiting
	t.MR = byte(mr)
	ra, err := addressFor(part.to)
	if err != nil {
		return fmt.Errorf("deliver status report: %w", err)
	}
	t.RA = ra
	t.SCTS = tpdu.Timestamp{Time: part.at.Truncate(time.Second)}
	t.DT = tpdu.Timestamp{Time: time.Now().Truncate(time.Second)}
	t.ST = status
	m, err := s.mtFromTPDU(&t)
	if err != nil {
		return fmt.Errorf("deliver status report: %w", err)
	}
	if err := s.routeLocked([]mtPDU{m}); err != nil {
		return fmt.Errorf("deliver status report: %w", err)
	}
	s.kickEngine()
	return nil
}

func (s *Sim) reachableLocked() error {
	switch {
	case s.closed:
		return ErrClosed
	case s.unplugged:
		return ErrUnplugged
	case s.pinState != simReady:
		return ErrSIMLocked
	case s.set.cfun != 1:
		return fmt.Errorf("modem radio is off (+CFUN=%d): set AT+CFUN=1", s.set.cfun)
	}
	return nil
}

// deliverFields sets the SMS-DELIVER fields the encoder template lacks.
type deliverFields struct{ scts time.Time }

func (d deliverFields) ApplyTPDUOption(t *tpdu.TPDU) error {
	t.SCTS = tpdu.Timestamp{Time: d.scts}
	t.FirstOctet |= tpdu.FoMMS // no more messages waiting
	return nil
}

// encodeDeliverLocked builds the SMS-DELIVER part(s) with the long-lived
// encoder, so every multipart message gets its own concatenation reference.
func (s *Sim) encodeDeliverLocked(from, text string) ([]mtPDU, error) {
	oa, err := addressFor(from)
	if err != nil {
		return nil, err
	}
	tmpl := []sms.EncoderOption{
		sms.WithTemplateOption(tpdu.WithOA(oa)),
		sms.WithTemplateOption(deliverFields{scts: time.Now().Truncate(time.Second)}),
	}
	tpdus, err := s.encoder.Encode([]byte(text), tmpl...)
	if err != nil {
		return nil, fmt.Errorf("encode SMS-DELIVER: %w", err)
	}
	if len(tpdus) == 0 { // empty text: one part with no user data
		t, err := tpdu.NewDeliver(tpdu.WithOA(oa), deliverFields{scts: time.Now().Truncate(time.Second)})
		if err != nil {
			return nil, err
		}
		t.SetDCS(0)
		tpdus = []tpdu.TPDU{*t}
	}
	out := make([]mtPDU, 0, len(tpdus))
	for i := range tpdus {
		m, err := s.mtFromTPDU(&tpdus[i])
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func (s *Sim) mtFromTPDU(t *tpdu.TPDU) (mtPDU, error) {
	b, err := t.MarshalBinary()
	if err != nil {
		return mtPDU{}, fmt.Errorf("marshal TPDU: %w", err)
	}
	sc, err := smscField(s.smsc)
	if err != nil {
		return mtPDU{}, err
	}
	return parseMT(strings.ToUpper(hex.EncodeToString(append(sc, b...))))
}

// smscField encodes the SMSC address field of a PDU-mode PDU.
func smscField(number string) ([]byte, error) {
	a, err := addressFor(number)
	if err != nil {
		return nil, fmt.Errorf("SMSC address: %w", err)
	}
	if a.TOA == 0xD0 {
		return nil, fmt.Errorf("SMSC address %q is not a number", number)
	}
	sc := pdumode.SMSCAddress{Address: a}
	return sc.MarshalBinary()
}

// addressFor makes a TP address: "+digits" international (TOA 0x91),
// digits unknown type (0x81), otherwise alphanumeric (0xD0, at most 11
// GSM characters).
func addressFor(number string) (tpdu.Address, error) {
	digits := strings.TrimPrefix(number, "+")
	switch {
	case number == "":
		return tpdu.Address{}, errors.New("empty address")
	case digits != "" && strings.Trim(digits, "0123456789") == "":
		if len(digits) > 20 {
			return tpdu.Address{}, fmt.Errorf("address %q has more than 20 digits", number)
		}
		if strings.HasPrefix(number, "+") {
			return tpdu.NewAddress(tpdu.FromNumber(number)), nil
		}
		return tpdu.Address{TOA: 0x81, Addr: digits}, nil
	case len([]rune(number)) > 11:
		return tpdu.Address{}, fmt.Errorf("alphanumeric address %q is longer than 11 characters", number)
	}
	return tpdu.Address{TOA: 0xD0, Addr: number}, nil
}

// parseMT checks that a hex PDU (with SMSC field) has an SMSC field and a
// TPDU whose TP-MTI says SMS-DELIVER or SMS-STATUS-REPORT.
func parseMT(hexPDU string) (mtPDU, error) {
	h := strings.ToUpper(strings.TrimSpace(hexPDU))
	pd, err := pdumode.UnmarshalHexString(h)
	if err != nil {
		return mtPDU{}, fmt.Errorf("parse PDU %q: %w", h, err)
	}
	if len(pd.TPDU) == 0 {
		return mtPDU{}, fmt.Errorf("parse PDU %q: no TPDU after the SMSC field", h)
	}
	m := mtPDU{hex: h, tlen: len(pd.TPDU), class: tpdu.MClassUnknown}
	switch tpdu.FirstOctet(pd.TPDU[0]).MTI() {
	case tpdu.MtDeliver:
		// A network passes PDUs through; only the class matters here, so
		// PDUs the strict warthog618 decoder rejects (FF padding, short UD)
		// are still delivered for the host's decoder to judge.
		if t, err := sms.Unmarshal(pd.TPDU, sms.AsMT); err == nil {
			if c, err := t.DCS.Class(); err == nil {
				m.class = c
			}
		}
	case tpdu.MtCommand: // MT direction: SMS-STATUS-REPORT
		m.report = true
	default:
		return mtPDU{}, fmt.Errorf("PDU %q is not an SMS-DELIVER or SMS-STATUS-REPORT (TP-MTI %d)", h, pd.TPDU[0]&3)
	}
	return m, nil
}

// routeForLocked applies the <mt>/<ds> tables of 27.005 3.4.1.
func (s *Sim) routeForLocked(m mtPDU) route {
	if m.report {
		switch s.set.cnmi[3] {
		case 1:
			return routeDirect
		case 2:
			return routeStoreNotify
		}
		return routeDrop
	}
	switch s.set.cnmi[1] {
	case 1:
		return routeStoreNotify
	case 2:
		if m.class == tpdu.MClass2 {
			return routeStoreNotify
		}
		return routeDirect
	case 3:
		if m.class == tpdu.MClass3 {
			return routeDirect
		}
		return routeStoreNotify
	}
	return routeStore
}

// routeLocked delivers the parts of one message, all or nothing with
// respect to storage space.
func (s *Sim) routeLocked(parts []mtPDU) error {
	routes := make([]route, len(parts))
	need := 0
	for i, p := range parts {
		routes[i] = s.routeForLocked(p)
		if routes[i] == routeStore || routes[i] == routeStoreNotify {
			need++
		}
	}
	if free := len(s.slots) - s.usedLocked(); need > free {
		return fmt.Errorf("%d part(s) to store, %d of %d slots free in %q (host must delete messages with AT+CMGD): %w",
			need, free, len(s.slots), s.opts.Storage, ErrStoreFull)
	}
	for i, p := range parts {
		switch routes[i] {
		case routeStore, routeStoreNotify:
			idx, err := s.storeLocked(p)
			if err != nil {
				return err
			}
			if routes[i] == routeStoreNotify {
				name := "+CMTI"
				if p.report {
					name = "+CDSI"
				}
				s.urcs = append(s.urcs, urc{kind: urcIndication, text: fmt.Sprintf("\r\n%s: \"%s\",%d\r\n", name, s.opts.Storage, idx)})
			}
		case routeDirect:
			u := urc{kind: urcCMT, pdu: p.hex, text: fmt.Sprintf("\r\n+CMT: ,%d\r\n%s\r\n", p.tlen, p.hex)}
			if p.report {
				u = urc{kind: urcCDS, pdu: p.hex, text: fmt.Sprintf("\r\n+CDS: %d\r\n%s\r\n", p.tlen, p.hex)}
			}
			s.urcs = append(s.urcs, u)
		case routeDrop:
			s.log.Debug("dropped status report (+CNMI ds=0)")
		}
	}
	return nil
}

// routeHexLocked re-routes one PDU (pending retries, +CNMA timeout).
func (s *Sim) routeHexLocked(hexPDU string) error {
	m, err := parseMT(hexPDU)
	if err != nil {
		return err
	}
	return s.routeLocked([]mtPDU{m})
}

// storeLocked puts a PDU into the first free slot as REC UNREAD and returns
// its index.
func (s *Sim) storeLocked(m mtPDU) (int, error) {
	for i, sl := range s.slots {
		if sl == nil {
			s.slots[i] = &slot{pdu: m.hex, tlen: m.tlen, stat: 0}
			s.log.Debug("stored message", zap.Int("index", s.indexOf(i)))
			return s.indexOf(i), nil
		}
	}
	return 0, fmt.Errorf("no free slot in %q: %w", s.opts.Storage, ErrStoreFull)
}
