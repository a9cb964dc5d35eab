package modemsim

import (
	"fmt"
	"sort"
	"strings"
)

// maxCID is the highest context identifier, as on Quectel EC25/EG25.
const maxCID = 15

// pdpContext is one +CGDCONT definition and its +CGACT state.
type pdpContext struct {
	pdpType, apn string
	active       bool
}

// Bearer describes a PDP context as the host left it: APN and whether it
// is active (for tests).
type Bearer struct {
	APN    string
	Active bool
}

// Bearers returns the defined PDP contexts by cid.
func (s *Sim) Bearers() map[int]Bearer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int]Bearer{}
	for cid, c := range s.pdp {
		out[cid] = Bearer{APN: c.apn, Active: c.active}
	}
	return out
}

func (s *Sim) cids() []int {
	var ids []int
	for cid := range s.pdp {
		ids = append(ids, cid)
	}
	sort.Ints(ids)
	return ids
}

// cmdCGDCONT is 27.007 §10.1.1: define (=cid,"type","apn"), undefine
// (=cid), list (?) and ranges (=?). A cid out of range or an unknown PDP
// type is +CME ERROR: 50; an active context cannot be redefined.
func (s *Sim) cmdCGDCONT(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindTest:
		return []string{fmt.Sprintf(`+CGDCONT: (1-%d),"IP",,,(0-2),(0-4)`, maxCID), fmt.Sprintf(`+CGDCONT: (1-%d),"IPV6",,,(0-2),(0-4)`, maxCID),
			fmt.Sprintf(`+CGDCONT: (1-%d),"IPV4V6",,,(0-2),(0-4)`, maxCID)}, "", nil
	case kindRead:
		var info []string
		for _, cid := range s.cids() {
			p := s.pdp[cid]
			info = append(info, fmt.Sprintf(`+CGDCONT: %d,"%s","%s","0.0.0.0",0,0`, cid, p.pdpType, p.apn))
		}
		return info, "", nil
	case kindSet:
		cid, ok := intArg(c.args, 0)
		if !ok || cid < 1 || cid > maxCID {
			return nil, s.cmeLocked(50), nil
		}
		if len(c.args) == 1 {
			delete(s.pdp, cid)
			return nil, "", nil
		}
		typ, ok := strArg(c.args, 1)
		typ = strings.ToUpper(typ)
		if !ok || (typ != "IP" && typ != "IPV6" && typ != "IPV4V6") {
			return nil, s.cmeLocked(50), nil
		}
		apn, _ := strArg(c.args, 2)
		if old := s.pdp[cid]; old != nil && old.active {
			return nil, resultError, nil
		}
		if s.pdp == nil {
			s.pdp = map[int]*pdpContext{}
		}
		s.pdp[cid] = &pdpContext{pdpType: typ, apn: apn}
		return nil, "", nil
	}
	return nil, resultError, nil
}

// cmdCGACT is 27.007 §10.1.10: activate or deactivate (=state,cid), list
// (?) and ranges (=?). An undefined or out-of-range cid is +CME ERROR: 50;
// activating without network registration is +CME ERROR: 30.
func (s *Sim) cmdCGACT(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindTest:
		return []string{"+CGACT: (0,1)"}, "", nil
	case kindRead:
		var info []string
		for _, cid := range s.cids() {
			st := 0
			if s.pdp[cid].active {
				st = 1
			}
			info = append(info, fmt.Sprintf("+CGACT: %d,%d", cid, st))
		}
		return info, "", nil
	case kindSet:
		state, ok := intArg(c.args, 0)
		cid, ok2 := intArg(c.args, 1)
		if !ok || state > 1 || !ok2 || s.pdp[cid] == nil {
			return nil, s.cmeLocked(50), nil
		}
		if state == 1 && !s.registered() {
			return nil, s.cmeLocked(30), nil
		}
		s.pdp[cid].active = state == 1
		return nil, "", nil
	}
	return nil, resultError, nil
}
