package modemsim

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/warthog618/sms"
	"github.com/warthog618/sms/encoding/pdumode"
	"github.com/warthog618/sms/encoding/tpdu"
	"go.uber.org/zap"
)

// maxTPDU is the largest TPDU a +CMGS length may announce (SMS-SUBMIT with
// a 20-digit DA, relative VP and 140 octets of user data is 164 octets).
const maxTPDU = 164

// --- 27.005 SMS commands (PDU mode) ---

func (s *Sim) cmdCMGF(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindRead:
		return []string{"+CMGF: 0"}, "", nil
	case kindTest:
		return []string{"+CMGF: (0)"}, "", nil
	case kindExec:
		return nil, "", nil
	case kindSet:
		if v, ok := intArg(c.args, 0); ok && v == 0 && len(c.args) == 1 {
			return nil, "", nil
		}
	}
	return nil, resultError, nil // text mode (1) is not modelled
}

func (s *Sim) cmdCSMS(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindRead:
		return []string{fmt.Sprintf("+CSMS: %d,1,1,1", s.set.csms)}, "", nil
	case kindTest:
		if s.opts.NoCSMS {
			return []string{"+CSMS: (0)"}, "", nil
		}
		return []string{"+CSMS: (0,1)"}, "", nil
	case kindSet:
		v, ok := intArg(c.args, 0)
		if !ok || v > 1 || (v == 1 && s.opts.NoCSMS) {
			return nil, resultError, nil
		}
		s.set.csms = v
		return []string{"+CSMS: 1,1,1"}, "", nil
	}
	return nil, resultError, nil
}

func (s *Sim) usedLocked() int {
	n := 0
	for _, m := range s.slots {
		if m != nil {
			n++
		}
	}
	return n
}

func (s *Sim) cmdCPMS(c call) ([]string, string, *prompt) {
	mem := s.opts.Storage
	used, total := s.usedLocked(), len(s.slots)
	switch c.kind {
	case kindRead:
		return []string{fmt.Sprintf("+CPMS: \"%s\",%d,%d,\"%s\",%d,%d,\"%s\",%d,%d", mem, used, total, mem, used, total, mem, used, total)}, "", nil
	case kindTest:
		return []string{fmt.Sprintf("+CPMS: (\"%s\"),(\"%s\"),(\"%s\")", mem, mem, mem)}, "", nil
	case kindSet:
		if len(c.args) > 3 {
			return nil, resultError, nil
		}
		for i := range c.args {
			m, ok := strArg(c.args, i)
			if !ok {
				return nil, resultError, nil
			}
			if !strings.EqualFold(m, mem) {
				return nil, s.cmsLocked(302), nil
			}
		}
		return []string{fmt.Sprintf("+CPMS: %d,%d,%d,%d,%d,%d", used, total, used, total, used, total)}, "", nil
	}
	return nil, resultError, nil
}

var cnmiGroup = regexp.MustCompile(`\(([^()]*)\)`)

// parseCNMIModes parses "(0-3),(0-3),(0,2),(0-2),(0,1)".
func parseCNMIModes(spec string) ([5]map[int]bool, error) {
	var out [5]map[int]bool
	groups := cnmiGroup.FindAllStringSubmatch(spec, -1)
	if len(groups) != 5 {
		return out, fmt.Errorf("want 5 parenthesised value lists like %q", DefaultCNMIModes)
	}
	for i, g := range groups {
		out[i] = map[int]bool{}
		for _, item := range strings.Split(g[1], ",") {
			item = strings.TrimSpace(item)
			lo, hi, isRange := strings.Cut(item, "-")
			a, err := strconv.Atoi(lo)
			if err != nil {
				return out, fmt.Errorf("bad value %q in list %d", item, i+1)
			}
			b := a
			if isRange {
				if b, err = strconv.Atoi(hi); err != nil || b < a {
					return out, fmt.Errorf("bad range %q in list %d", item, i+1)
				}
			}
			for v := a; v <= b; v++ {
				out[i][v] = true
			}
		}
	}
	return out, nil
}

// parseCNMIValue parses "2,1,0,0,0" and checks it against allow.
func parseCNMIValue(v string, allow [5]map[int]bool) ([5]int, error) {
	var out [5]int
	parts := strings.Split(v, ",")
	if len(parts) != 5 {
		return out, errors.New("want 5 comma-separated numbers like \"2,1,0,0,0\"")
	}
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || !allow[i][n] {
			return out, fmt.Errorf("value %q at position %d is not in the accepted +CNMI modes", p, i+1)
		}
		out[i] = n
	}
	return out, nil
}

func (s *Sim) cmdCNMI(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindRead:
		return []string{"+CNMI: " + formatInts(s.set.cnmi[:])}, "", nil
	case kindTest:
		return []string{"+CNMI: " + s.opts.CNMIModes}, "", nil
	case kindExec:
		return nil, "", nil
	case kindSet:
		if len(c.args) > 5 {
			return nil, resultError, nil
		}
		next := s.set.cnmi
		for i, a := range c.args {
			if a == "" {
				continue
			}
			v, ok := intArg(c.args, i)
			if !ok {
				return nil, resultError, nil
			}
			if !s.cnmiAllow[i][v] {
				return nil, s.cmsLocked(303), nil
			}
			next[i] = v
		}
		if s.set.cnmi[0] == 0 && next[0] != 0 && next[4] == 1 {
			// <bfr>=1: clear the TA buffer of codes held in mode 0. Stored
			// messages stay stored; direct-routed ones were never
			// delivered, so the network keeps them.
			for _, u := range s.urcs {
				if u.direct() {
					s.pending = append(s.pending, u.pdu)
				}
			}
			s.urcs = nil
		}
		s.set.cnmi = next
		return nil, "", nil
	}
	return nil, resultError, nil
}

func (s *Sim) cmdCNMA(c call) ([]string, string, *prompt) {
	n := 0
	switch c.kind {
	case kindTest:
		return []string{"+CNMA: (0-2)"}, "", nil
	case kindRead:
		return nil, resultError, nil
	case kindSet:
		v, ok := intArg(c.args, 0)
		if !ok || v > 2 {
			return nil, s.cmsLocked(304), nil
		}
		n = v
	}
	if s.set.csms != 1 || s.awaitAck == nil {
		return nil, s.cmsLocked(340), nil
	}
	if n == 2 {
		if l, ok := intArg(c.args, 1); ok && l > 0 {
			return nil, "", &prompt{cmd: "+CNMA", length: l}
		}
		info, final := s.nackLocked()
		return info, final, nil
	}
	s.awaitAck = nil
	return nil, "", nil
}

// nackLocked answers AT+CNMA=2: the ME sends RP-ERROR, the network keeps
// the message (pending) and routing stays enabled.
func (s *Sim) nackLocked() ([]string, string) {
	if s.awaitAck == nil {
		return nil, s.cmsLocked(340)
	}
	s.pending = append(s.pending, s.awaitAck.pdu)
	s.awaitAck = nil
	return nil, ""
}

func (s *Sim) cmdCMGS(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindTest:
		return nil, "", nil
	case kindSet:
		l, ok := intArg(c.args, 0)
		if !ok || len(c.args) != 1 || l < 1 || l > maxTPDU {
			return nil, s.cmsLocked(304), nil
		}
		s.x.promptLocked()
		return nil, "", &prompt{cmd: "+CMGS", length: l}
	}
	return nil, resultError, nil
}

// submitLocked validates and "sends" one SMS-SUBMIT entered after the +CMGS
// prompt.
func (s *Sim) submitLocked(length int, hexPDU string) ([]string, string) {
	if len(hexPDU) == 0 || len(hexPDU)%2 != 0 || len(hexPDU) > maxPDU {
		return nil, s.cmsLocked(304)
	}
	pd, err := pdumode.UnmarshalHexString(hexPDU)
	if err != nil || len(pd.TPDU) != length {
		return nil, s.cmsLocked(304)
	}
	t, err := sms.Unmarshal(pd.TPDU, sms.AsMO)
	if err != nil || t.SmsType() != tpdu.SmsSubmit {
		return nil, s.cmsLocked(304)
	}
	s.x.noteCMGSLocked(hexPDU)
	if len(s.failNext) > 0 {
		code := s.failNext[0]
		s.failNext = s.failNext[1:]
		return nil, s.cmsLocked(code)
	}
	if s.pinState != simReady || s.set.cfun != 1 || s.x.wedged {
		return nil, s.cmsLocked(331)
	}
	s.mr = (s.mr + 1) % 256
	part := submitPart{
		to:  t.DA.Number(),
		mr:  s.mr,
		pdu: hexPDU,
		seq: 1,
		srr: t.FirstOctet.SRR(),
		at:  time.Now(),
		t:   t,
	}
	if segs, seq, ref, ok := t.ConcatInfo(); ok && segs > 1 {
		part.seq, part.total, part.ref = seq, segs, ref
	}
	s.submits = append(s.submits, part)
	if len(s.submits) > 1024 {
		s.submits = s.submits[len(s.submits)-1024:]
	}
	s.collectLocked(part)
	s.x.acceptedLocked(s.mr)
	s.log.Debug("accepted SMS-SUBMIT", zap.Int("mr", s.mr), zap.String("pdu", hexPDU))
	return []string{fmt.Sprintf("+CMGS: %d", s.mr)}, ""
}

// collectLocked reassembles concatenated parts (by DA, reference and part
// count) and records complete messages in Sent.
func (s *Sim) collectLocked(p submitPart) {
	parts := []submitPart{p}
	if p.total > 1 {
		key := fmt.Sprintf("%s|%d|%d", p.to, p.ref, p.total)
		got := s.partial[key]
		replaced := false
		for i := range got {
			if got[i].seq == p.seq {
				got[i] = p // a retransmitted part replaces the earlier one
				replaced = true
			}
		}
		if !replaced {
			got = append(got, p)
		}
		if len(got) < p.total {
			s.partial[key] = got
			return
		}
		delete(s.partial, key)
		sort.Slice(got, func(i, j int) bool { return got[i].seq < got[j].seq })
		parts = got
	}
	msg := Sent{To: p.to, Parts: len(parts)}
	if p.total > 1 {
		msg.ConcatRef = p.ref
	}
	segs := make([]*tpdu.TPDU, len(parts))
	for i, q := range parts {
		segs[i] = q.t
		msg.MRs = append(msg.MRs, q.mr)
		msg.PDUs = append(msg.PDUs, q.pdu)
		msg.StatusReport = msg.StatusReport || q.srr
	}
	text, err := sms.Decode(segs)
	if err != nil {
		s.log.Warn("failed to decode submitted message", zap.Error(err))
	}
	msg.Text = string(text)
	s.sent = append(s.sent, msg)
	close(s.sentSignal)
	s.sentSignal = make(chan struct{})
	s.loopBackLocked(msg)
}

// loopBackLocked plays the network delivering a message the host sent to
// the SIM's own number back to it, from that number.
func (s *Sim) loopBackLocked(msg Sent) {
	own := s.opts.Subscriber
	if own == "" {
		own = s.opts.OwnNumber
	}
	if own == "" || strings.TrimPrefix(msg.To, "+") != strings.TrimPrefix(own, "+") {
		return
	}
	parts, err := s.encodeDeliverLocked(own, msg.Text)
	if err == nil {
		err = s.routeLocked(parts)
	}
	if err != nil {
		s.log.Warn("failed to deliver a message to the SIM's own number back to it", zap.Error(err))
		return
	}
	s.kickEngine()
}

func (s *Sim) cmdCMGR(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindTest:
		return nil, "", nil
	case kindSet:
		idx, ok := intArg(c.args, 0)
		if !ok || len(c.args) != 1 {
			return nil, s.cmsLocked(304), nil
		}
		n, ok := s.slotOf(idx)
		if !ok {
			return nil, s.cmsLocked(321), nil
		}
		m := s.slots[n]
		if m == nil {
			return nil, "", nil // empty slot: OK without information text
		}
		info := []string{fmt.Sprintf("+CMGR: %d,,%d", m.stat, m.tlen), m.pdu}
		if m.stat == 0 {
			m.stat = 1 // REC UNREAD -> REC READ
		}
		return info, "", nil
	}
	return nil, resultError, nil
}

func (s *Sim) cmdCMGL(c call) ([]string, string, *prompt) {
	stat := 0 // 27.005: default <stat> is "received unread"
	switch c.kind {
	case kindTest:
		return []string{"+CMGL: (0-4)"}, "", nil
	case kindRead:
		return nil, resultError, nil
	case kindSet:
		v, ok := intArg(c.args, 0)
		if !ok || v > 4 || len(c.args) > 2 {
			return nil, s.cmsLocked(304), nil
		}
		stat = v
	}
	var info []string
	var read []*slot
	for i, m := range s.slots {
		if m == nil || (stat != 4 && m.stat != stat) {
			continue
		}
		info = append(info, fmt.Sprintf("+CMGL: %d,%d,,%d", s.indexOf(i), m.stat, m.tlen), m.pdu)
		read = append(read, m)
	}
	for _, m := range read {
		if m.stat == 0 {
			m.stat = 1
		}
	}
	return info, "", nil
}

func (s *Sim) cmdCMGD(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindTest:
		lo := s.indexOf(0)
		return []string{fmt.Sprintf("+CMGD: (%d-%d),(0-4)", lo, s.indexOf(len(s.slots)-1))}, "", nil
	case kindSet:
		idx, ok := intArg(c.args, 0)
		if !ok || len(c.args) > 2 {
			return nil, s.cmsLocked(304), nil
		}
		flag := 0
		if len(c.args) == 2 {
			if flag, ok = intArg(c.args, 1); !ok || flag > 4 {
				return nil, s.cmsLocked(304), nil
			}
		}
		if flag == 0 {
			n, ok := s.slotOf(idx)
			if !ok {
				return nil, s.cmsLocked(321), nil
			}
			s.slots[n] = nil
			return nil, "", nil
		}
		for i, m := range s.slots {
			// flags 1-3 delete read messages (and sent/unsent MO
			// messages, which this modem never stores); 4 deletes all.
			if m != nil && (flag == 4 || m.stat == 1) {
				s.slots[i] = nil
			}
		}
		return nil, "", nil
	}
	return nil, resultError, nil
}

func (s *Sim) cmdCSCA(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindRead:
		toa := 129
		if strings.HasPrefix(s.smsc, "+") {
			toa = 145
		}
		return []string{fmt.Sprintf("+CSCA: \"%s\",%d", s.smsc, toa)}, "", nil
	case kindTest:
		return nil, "", nil
	case kindSet:
		v, ok := strArg(c.args, 0)
		if !ok || v == "" || len(c.args) > 2 {
			return nil, s.cmsLocked(304), nil
		}
		if _, err := smscField(v); err != nil {
			return nil, s.cmsLocked(304), nil
		}
		s.smsc = v
		return nil, "", nil
	}
	return nil, resultError, nil
}

func (s *Sim) cmdCMMS(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindRead:
		return []string{fmt.Sprintf("+CMMS: %d", s.set.cmms)}, "", nil
	case kindTest:
		return []string{"+CMMS: (0-2)"}, "", nil
	case kindSet:
		v, ok := intArg(c.args, 0)
		if !ok || v > 2 {
			return nil, s.cmsLocked(304), nil
		}
		s.set.cmms = v
		return nil, "", nil
	}
	return nil, resultError, nil
}
