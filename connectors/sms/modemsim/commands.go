package modemsim

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Identification answered by +CGMI/+CGMM/+CGMR/+CGSN/+CIMI, ATI and +COPS.
const (
	// Manufacturer is answered by +CGMI.
	Manufacturer = "Bubbled"
	// Model is answered by +CGMM.
	Model = "ModemSim"
	// Revision is answered by +CGMR.
	Revision = "modemsim 1.0"
	// IMEI is answered by +CGSN: the GSMA example IMEI (valid Luhn digit).
	IMEI = "490154203237518"
	// IMSI is answered by +CIMI: test network MCC 001, MNC 01.
	IMSI = "001010123456789"
	// Operator is the network name in +COPS?.
	Operator = "Simulated"
)

type callKind int

const (
	kindExec callKind = iota // AT+X
	kindRead                 // AT+X?
	kindTest                 // AT+X=?
	kindSet                  // AT+X=<args>
)

type call struct {
	name string
	kind callKind
	args []string
}

type handler func(s *Sim, c call) (info []string, final string, p *prompt)

// extHandlers maps extended command names to handlers. gate says what a
// command needs from the SIM: 'S' SMS command (+CMS ERROR 311/316 while
// locked), 'E' 27.007 command (+CME ERROR 11/12).
var extHandlers = map[string]struct {
	gate byte
	h    handler
}{
	"+CMEE":    {0, (*Sim).cmdCMEE},
	"+CMGF":    {0, (*Sim).cmdCMGF},
	"+CSMS":    {0, (*Sim).cmdCSMS},
	"+CPMS":    {'S', (*Sim).cmdCPMS},
	"+CNMI":    {0, (*Sim).cmdCNMI},
	"+CNMA":    {'S', (*Sim).cmdCNMA},
	"+CMGS":    {'S', (*Sim).cmdCMGS},
	"+CMGR":    {'S', (*Sim).cmdCMGR},
	"+CMGL":    {'S', (*Sim).cmdCMGL},
	"+CMGD":    {'S', (*Sim).cmdCMGD},
	"+CSCA":    {'S', (*Sim).cmdCSCA},
	"+CMMS":    {0, (*Sim).cmdCMMS},
	"+CNUM":    {'E', (*Sim).cmdCNUM},
	"+CPIN":    {0, (*Sim).cmdCPIN},
	"+CSQ":     {0, (*Sim).cmdCSQ},
	"+CREG":    {0, (*Sim).cmdCREG},
	"+CGREG":   {0, (*Sim).cmdCREG},
	"+CEREG":   {0, (*Sim).cmdCREG},
	"+COPS":    {0, (*Sim).cmdCOPS},
	"+CFUN":    {0, (*Sim).cmdCFUN},
	"+CSCS":    {0, (*Sim).cmdCSCS},
	"+CUSD":    {'E', (*Sim).cmdCUSD},
	"+CLIP":    {0, (*Sim).cmdCLIP},
	"+CHUP":    {0, (*Sim).cmdCHUP},
	"+GCAP":    {0, ident("+GCAP: +CGSM")},
	"+CGMI":    {0, ident(Manufacturer)},
	"+GMI":     {0, ident(Manufacturer)},
	"+CGMM":    {0, ident(Model)},
	"+GMM":     {0, ident(Model)},
	"+CGMR":    {0, ident(Revision)},
	"+GMR":     {0, ident(Revision)},
	"+CGSN":    {0, ident(IMEI)},
	"+GSN":     {0, ident(IMEI)},
	"+CIMI":    {'E', ident(IMSI)},
	"+CGDCONT": {'E', (*Sim).cmdCGDCONT},
	"+CGACT":   {'E', (*Sim).cmdCGACT},
}

// execLineLocked executes one command line and builds the framed response.
func (s *Sim) execLineLocked(line string) reply {
	t := strings.TrimLeft(line, " \t")
	if len(t) < 2 || !strings.EqualFold(t[:2], "AT") {
		return reply{} // V.250: characters before "AT" are ignored
	}
	cmds, ok := splitCommands(upperOutsideQuotes(t[2:]))
	if !ok {
		return reply{text: frameFinal(resultError)}
	}
	var b strings.Builder
	var delay time.Duration
	for _, c := range cmds {
		info, final, p := s.execLocked(c)
		if p != nil {
			b.WriteString(frame(info, ""))
			b.WriteString("\r\n> ")
			return reply{text: b.String(), delay: delay, prompt: p}
		}
		delay += s.delayForLocked(c)
		b.WriteString(frame(info, final))
		if final != "" {
			return reply{text: b.String(), delay: delay}
		}
	}
	b.WriteString(frameFinal("OK"))
	return reply{text: b.String(), delay: delay}
}

// splitCommands splits the part of a command line after "AT" into basic
// (E0, Z, &F, S0=0) and extended (+CMGF=0) commands; extended commands are
// separated by ';' (V.250 5.4).
func splitCommands(body string) ([]string, bool) {
	var cmds []string
	i := 0
	for i < len(body) {
		c := body[i]
		switch {
		case c == ' ' || c == ';':
			i++
		case strings.IndexByte("+^$#%*", c) >= 0:
			var b strings.Builder
			inQ := false
			j := i
			for ; j < len(body); j++ {
				ch := body[j]
				if ch == '"' {
					inQ = !inQ
				}
				if !inQ && ch == ';' {
					break
				}
				if !inQ && ch == ' ' {
					continue
				}
				b.WriteByte(ch)
			}
			cmds = append(cmds, b.String())
			i = j
		case c == '&':
			j := i + 1
			if j < len(body) && isLetter(body[j]) {
				j++
			}
			j = skipDigits(body, j)
			cmds = append(cmds, body[i:j])
			i = j
		case c == 'S':
			j := skipDigits(body, i+1)
			if j < len(body) && body[j] == '?' {
				j++
			} else if j < len(body) && body[j] == '=' {
				j = skipDigits(body, j+1)
			}
			cmds = append(cmds, body[i:j])
			i = j
		case isLetter(c):
			j := skipDigits(body, i+1)
			cmds = append(cmds, body[i:j])
			i = j
		default:
			return nil, false
		}
	}
	return cmds, true
}

func isLetter(c byte) bool { return c >= 'A' && c <= 'Z' }

func skipDigits(s string, j int) int {
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	return j
}

// upperOutsideQuotes upper-cases command names and parameters but keeps
// string constants ("...") as typed.
func upperOutsideQuotes(s string) string {
	b := []byte(s)
	inQ := false
	for i, c := range b {
		if c == '"' {
			inQ = !inQ
			continue
		}
		if !inQ && c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// execLocked executes one basic or extended command. final "" means
// success; a non-nil prompt means PDU input follows.
func (s *Sim) execLocked(c string) ([]string, string, *prompt) {
	if c == "" {
		return nil, resultError, nil
	}
	switch c[0] {
	case '+', '^', '$', '#', '%', '*':
		return s.execExtendedLocked(c)
	case '&':
		switch {
		case c == "&F" || c == "&F0":
			s.resetSettingsLocked()
			return nil, "", nil
		case strings.HasPrefix(c, "&W"), strings.HasPrefix(c, "&C"), strings.HasPrefix(c, "&D"), strings.HasPrefix(c, "&K"):
			return nil, "", nil
		}
		return nil, resultError, nil
	case 'S':
		return s.execSRegLocked(c)
	}
	letter, val := c[0], c[1:]
	switch letter {
	case 'E':
		switch val {
		case "", "0":
			s.set.echo = false
		case "1":
			s.set.echo = true
		default:
			return nil, resultError, nil
		}
	case 'V':
		if val != "1" { // numeric result codes (V0) are not modelled
			return nil, resultError, nil
		}
	case 'Q':
		if val != "" && val != "0" {
			return nil, resultError, nil
		}
	case 'Z':
		if val != "" && val != "0" {
			return nil, resultError, nil
		}
		s.resetSettingsLocked()
	case 'I':
		if val != "" && val != "0" {
			return nil, resultError, nil
		}
		return []string{Manufacturer, Model, "Revision: " + Revision}, "", nil
	case 'H':
		s.x.hangUpLocked("ATH")
	case 'X', 'L', 'M':
	default:
		return nil, resultError, nil
	}
	return nil, "", nil
}

// execSRegLocked handles Sn?, Sn=v for the V.250 S-registers 0..12.
func (s *Sim) execSRegLocked(c string) ([]string, string, *prompt) {
	rest := c[1:]
	j := skipDigits(rest, 0)
	n, err := strconv.Atoi(rest[:j])
	if err != nil || n < 0 || n > 12 {
		return nil, resultError, nil
	}
	op := rest[j:]
	switch {
	case op == "?":
		return []string{fmt.Sprintf("%03d", s.sreg(n))}, "", nil
	case strings.HasPrefix(op, "="):
		v, err := strconv.Atoi(op[1:])
		if err != nil || v < 0 || v > 255 {
			return nil, resultError, nil
		}
		if s.set.sregs == nil {
			s.set.sregs = map[int]int{}
		}
		s.set.sregs[n] = v
		return nil, "", nil
	}
	return nil, resultError, nil
}

func (s *Sim) sreg(n int) int {
	if v, ok := s.set.sregs[n]; ok {
		return v
	}
	return map[int]int{3: 13, 4: 10, 5: 8, 6: 2, 7: 50, 8: 2, 10: 14, 12: 50}[n]
}

func (s *Sim) execExtendedLocked(c string) ([]string, string, *prompt) {
	i := strings.IndexAny(c, "=?")
	name, rest := c, ""
	if i >= 0 {
		name, rest = c[:i], c[i:]
	}
	var cl call
	cl.name = name
	switch {
	case rest == "":
		cl.kind = kindExec
	case rest == "?":
		cl.kind = kindRead
	case rest == "=?":
		cl.kind = kindTest
	case rest[0] == '=':
		cl.kind = kindSet
		cl.args = splitArgs(rest[1:])
	default:
		return nil, resultError, nil
	}
	h, ok := extHandlers[name]
	if !ok {
		return nil, resultError, nil
	}
	if cl.kind != kindTest && h.gate != 0 && s.pinState != simReady {
		puk := s.pinState == simPUK
		if h.gate == 'S' {
			if puk {
				return nil, s.cmsLocked(316), nil
			}
			return nil, s.cmsLocked(311), nil
		}
		if puk {
			return nil, s.cmeLocked(12), nil
		}
		return nil, s.cmeLocked(11), nil
	}
	return h.h(s, cl)
}

// splitArgs splits a parameter list on commas outside string constants.
func splitArgs(s string) []string {
	var out []string
	inQ := false
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			inQ = !inQ
		case ',':
			if !inQ {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

// intArg parses a numeric parameter; ok is false when absent or invalid.
func intArg(args []string, i int) (int, bool) {
	if i >= len(args) || args[i] == "" {
		return 0, false
	}
	v, err := strconv.Atoi(args[i])
	if err != nil || v < 0 {
		return 0, false
	}
	return v, true
}

// strArg returns a string parameter without its quotes; ok is false when
// absent or not a quoted string constant.
func strArg(args []string, i int) (string, bool) {
	if i >= len(args) {
		return "", false
	}
	a := args[i]
	if len(a) < 2 || a[0] != '"' || a[len(a)-1] != '"' {
		return "", false
	}
	return a[1 : len(a)-1], true
}

func ident(text string) handler {
	return func(s *Sim, c call) ([]string, string, *prompt) {
		switch c.kind {
		case kindExec:
			return []string{text}, "", nil
		case kindTest:
			return nil, "", nil
		}
		return nil, resultError, nil
	}
}

// --- 27.007 / V.250 general commands ---

func (s *Sim) cmdCMEE(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindRead:
		return []string{fmt.Sprintf("+CMEE: %d", s.set.cmee)}, "", nil
	case kindTest:
		return []string{"+CMEE: (0-2)"}, "", nil
	case kindSet:
		v, ok := intArg(c.args, 0)
		if !ok || v > 2 || len(c.args) > 1 {
			return nil, resultError, nil
		}
		s.set.cmee = v
		return nil, "", nil
	case kindExec:
		s.set.cmee = 0
		return nil, "", nil
	}
	return nil, resultError, nil
}

func (s *Sim) cmdCPIN(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindRead:
		state := map[pinState]string{simReady: "READY", simPIN: "SIM PIN", simPUK: "SIM PUK"}[s.pinState]
		return []string{"+CPIN: " + state}, "", nil
	case kindTest:
		return nil, "", nil
	case kindSet:
		code, ok := strArg(c.args, 0)
		if !ok {
			code = c.args[0] // some hosts omit the quotes
		}
		switch s.pinState {
		case simReady:
			return nil, s.cmeLocked(3), nil
		case simPIN:
			if code == s.pin {
				s.pinState = simReady
				s.pinTries = 0
				return nil, "", nil
			}
			s.pinTries++
			if s.pinTries >= 3 {
				s.pinState = simPUK
				s.pukTries = 0
			}
			return nil, s.cmeLocked(16), nil
		case simPUK:
			newPIN, ok := strArg(c.args, 1)
			if !ok && len(c.args) > 1 {
				newPIN, ok = c.args[1], c.args[1] != ""
			}
			if !ok {
				return nil, s.cmeLocked(12), nil
			}
			if code != s.opts.PUK {
				s.pukTries++
				return nil, s.cmeLocked(16), nil
			}
			s.pin = newPIN
			s.pinState = simReady
			s.pinTries = 0
			return nil, "", nil
		}
	}
	return nil, resultError, nil
}

func (s *Sim) cmdCNUM(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindExec:
		n := s.opts.OwnNumber
		if n == "" {
			return nil, "", nil
		}
		toa := 129
		if strings.HasPrefix(n, "+") {
			toa = 145
		}
		return []string{fmt.Sprintf("+CNUM: \"\",\"%s\",%d", n, toa)}, "", nil
	case kindTest:
		return nil, "", nil
	}
	return nil, resultError, nil
}

func (s *Sim) cmdCSQ(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindExec:
		return []string{fmt.Sprintf("+CSQ: %d,99", s.x.rssiLocked())}, "", nil
	case kindTest:
		return []string{"+CSQ: (0-31,99),(0-7,99)"}, "", nil
	}
	return nil, resultError, nil
}

func (s *Sim) registered() bool {
	return s.pinState == simReady && s.set.cfun == 1 && !s.x.wedged && s.x.regLocked() != 0
}

func (s *Sim) cmdCREG(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindRead:
		stat := 0
		if s.registered() {
			stat = s.x.regLocked()
		}
		return []string{fmt.Sprintf("%s: %d,%d", c.name, s.set.creg, stat)}, "", nil
	case kindTest:
		return []string{c.name + ": (0-2)"}, "", nil
	case kindSet:
		v, ok := intArg(c.args, 0)
		if !ok || v > 2 {
			return nil, s.cmeLocked(50), nil
		}
		s.set.creg = v
		return nil, "", nil
	}
	return nil, resultError, nil
}

func (s *Sim) cmdCOPS(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindRead:
		if !s.registered() {
			return []string{"+COPS: 0"}, "", nil
		}
		return []string{fmt.Sprintf("+COPS: 0,0,\"%s\",7", s.x.operatorLocked())}, "", nil
	case kindTest:
		return []string{fmt.Sprintf("+COPS: (2,\"%s\",\"%s\",\"00101\",7),,(0-4),(0-2)", Operator, Operator)}, "", nil
	case kindSet:
		v, ok := intArg(c.args, 0)
		if !ok || v > 4 {
			return nil, s.cmeLocked(50), nil
		}
		return nil, "", nil
	}
	return nil, resultError, nil
}

func (s *Sim) cmdCFUN(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindRead:
		return []string{fmt.Sprintf("+CFUN: %d", s.set.cfun)}, "", nil
	case kindTest:
		return []string{"+CFUN: (0,1,4),(0,1)"}, "", nil
	case kindSet:
		v, ok := intArg(c.args, 0)
		if !ok || (v != 0 && v != 1 && v != 4) {
			return nil, s.cmeLocked(50), nil
		}
		if rst, ok := intArg(c.args, 1); ok && rst == 1 {
			s.powerOnLocked()
		}
		if v != 1 {
			s.x.radioOff = true
		} else if s.x.radioOff {
			s.x.wedged = false // a radio off/on cycle clears a wedged radio
			s.x.radioOff = false
		}
		s.set.cfun = v
		return nil, "", nil
	}
	return nil, resultError, nil
}

func (s *Sim) cmdCSCS(c call) ([]string, string, *prompt) {
	switch c.kind {
	case kindRead:
		return []string{fmt.Sprintf("+CSCS: \"%s\"", s.set.cscs)}, "", nil
	case kindTest:
		return []string{`+CSCS: ("GSM","IRA","UCS2")`}, "", nil
	case kindSet:
		v, ok := strArg(c.args, 0)
		switch strings.ToUpper(v) {
		case "GSM", "IRA", "UCS2":
			if ok {
				s.set.cscs = strings.ToUpper(v)
				return nil, "", nil
			}
		}
		return nil, s.cmeLocked(4), nil
	}
	return nil, resultError, nil
}
