package modemsim

import (
	"strings"
	"time"

	"go.uber.org/zap"
)

const (
	ctrlZ   = 0x1A
	esc     = 0x1B
	maxLine = 2048 // longer command lines are truncated (real modems: ~256..4096)
	maxPDU  = 2 * (12 + 176 + 8)

	maxCommandLog = 10000 // Commands() keeps the most recent lines
)

type urcKind int

const (
	urcIndication urcKind = iota // +CMTI / +CDSI: the message is stored
	urcCMT                       // +CMT: routed directly, may need +CNMA
	urcCDS                       // +CDS: routed directly, may need +CNMA
)

// urc is an unsolicited result code waiting to be written between commands.
type urc struct {
	kind urcKind
	text string // framed bytes, e.g. "\r\n+CMTI: \"SM\",3\r\n"
	pdu  string // for +CMT/+CDS: the PDU, handed back to the network if not acknowledged
}

func (u urc) direct() bool { return u.kind == urcCMT || u.kind == urcCDS }

// parser is the engine goroutine's input state; only the engine touches it.
type parser struct {
	gen    int
	line   []byte
	lastCR bool
	prompt *prompt
}

// prompt is the PDU input state after "> " (+CMGS, +CNMA=2,<len>).
type prompt struct {
	cmd    string // "+CMGS" or "+CNMA"
	length int    // announced TPDU length
	buf    []byte
}

// reply is what one command line produced.
type reply struct {
	text   string        // bytes to write (framed)
	delay  time.Duration // wait before writing text
	prompt *prompt       // enter PDU input after writing text
}

// engine is the single goroutine that parses input, executes commands,
// writes responses and URCs, and runs the +CNMA acknowledgement timer.
func (s *Sim) engine() {
	defer s.wg.Done()
	var p parser
	ackTimer := time.NewTimer(time.Hour)
	ackTimer.Stop()
	defer ackTimer.Stop()
	var ackC <-chan time.Time
	armed := 0
	for {
		if out, gen, seq := s.takeURCs(p.prompt != nil); len(out) > 0 {
			s.write(gen, out)
			if seq != 0 {
				armed = seq
				ackTimer.Reset(s.opts.AckTimeout)
				ackC = ackTimer.C
			}
		}
		select {
		case <-s.stop:
			return
		case <-s.kick:
		case c := <-s.in:
			if c.err != nil || c.data == nil {
				continue
			}
			if c.gen != p.gen {
				s.mu.Lock()
				cur := s.gen
				s.mu.Unlock()
				if c.gen != cur {
					continue // stale bytes from an unplugged pty
				}
				p = parser{gen: c.gen}
			}
			if !s.handleInput(&p, c.data) {
				return
			}
		case <-ackC:
			ackC = nil
			s.ackTimeout(armed)
		}
	}
}

// write writes to the pty of generation gen; output for an unplugged or
// replaced pty is dropped, as on a real serial line.
func (s *Sim) write(gen int, b []byte) {
	s.mu.Lock()
	m := s.master
	ok := s.gen == gen && m != nil
	s.mu.Unlock()
	if !ok {
		return
	}
	if _, err := m.Write(b); err != nil {
		s.log.Debug("failed to write to pty", zap.Error(err))
	}
}

// sleep waits d unless the simulator stops; it reports whether to go on.
func (s *Sim) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.stop:
		return false
	}
}

// handleInput consumes bytes from the host. It returns false when the
// simulator stopped while waiting.
func (s *Sim) handleInput(p *parser, data []byte) bool {
	var out []byte // echo not yet written
	flush := func() {
		if len(out) > 0 {
			s.write(p.gen, out)
			out = nil
		}
	}
	s.mu.Lock()
	hung := s.hung
	echo := s.set.echo
	s.mu.Unlock()
	for _, b := range data {
		if p.prompt != nil {
			if hung {
				continue
			}
			switch b {
			case ctrlZ, esc:
				if echo && b == ctrlZ {
					out = append(out, b)
				}
				flush()
				cmd := p.prompt.cmd
				r := s.finishPrompt(p.prompt, b == ctrlZ)
				p.prompt = nil
				p.lastCR = false
				if !s.sleep(r.delay) {
					return false
				}
				s.write(p.gen, []byte(r.text))
				if cmd == "+CMGS" {
					s.mu.Lock()
					s.x.answeredLocked(b == ctrlZ)
					s.mu.Unlock()
				}
			case '\r', '\n':
				// line breaks inside the PDU are ignored
			default:
				if len(p.prompt.buf) < maxPDU+1 {
					p.prompt.buf = append(p.prompt.buf, b)
				}
				if echo {
					out = append(out, b)
				}
			}
			continue
		}
		switch b {
		case '\r', '\n':
			if b == '\n' && p.lastCR {
				p.lastCR = false
				continue
			}
			p.lastCR = b == '\r'
			line := string(p.line)
			p.line = p.line[:0]
			r, e, h := s.runLine(line)
			echo, hung = e, h
			if hung {
				continue
			}
			if r.echoed {
				out = append(out, line...)
				out = append(out, b)
			}
			flush()
			if !s.sleep(r.delay) {
				return false
			}
			s.write(p.gen, []byte(r.text))
			if r.prompt != nil {
				p.prompt = r.prompt
				p.lastCR = false
			}
		case 0x08, 0x7F: // backspace (S5) and DEL
			p.lastCR = false
			if n := len(p.line); n > 0 {
				p.line = p.line[:n-1]
			}
		case esc:
			p.lastCR = false // ESC outside PDU input is ignored
		default:
			p.lastCR = false
			if len(p.line) < maxLine {
				p.line = append(p.line, b)
			}
		}
	}
	flush()
	return true
}

// lineReply is a reply plus whether the line was echoed when it arrived
// (echo state before executing ATE0).
type lineReply struct {
	reply
	echoed bool
}

// runLine logs and executes one command line. It returns the reply, the
// echo state for the following input and whether the modem is hung.
func (s *Sim) runLine(line string) (lineReply, bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if strings.TrimSpace(line) != "" {
		s.cmds = append(s.cmds, line)
		if len(s.cmds) > maxCommandLog {
			s.cmds = append([]string(nil), s.cmds[len(s.cmds)-maxCommandLog/2:]...)
		}
	}
	if s.hung && s.x.hangUntilZ && isReset(line) {
		s.hung, s.x.hangUntilZ = false, false
		s.log.Debug("modem recovered from its hang by a reset")
	}
	if s.hung {
		return lineReply{}, s.set.echo, true
	}
	if s.x.dropNext > 0 && strings.TrimSpace(line) != "" {
		s.x.dropNext--
		return lineReply{}, s.set.echo, true
	}
	echoed := s.set.echo
	r := s.execLineLocked(line)
	return lineReply{reply: r, echoed: echoed}, s.set.echo, false
}

// takeURCs returns the URC bytes that may be written now, the pty generation
// to write them to, and a non-zero ack sequence when a +CMT/+CDS that needs
// +CNMA was among them.
func (s *Sim) takeURCs(inPrompt bool) ([]byte, int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if inPrompt || s.hung || s.master == nil || s.set.cnmi[0] == 0 || len(s.urcs) == 0 {
		return nil, 0, 0
	}
	var out []byte
	var kept []urc
	seq := 0
	for _, u := range s.urcs {
		if u.direct() && s.set.csms == 1 {
			if s.awaitAck != nil {
				kept = append(kept, u) // 27.005: no further +CMT/+CDS until acknowledged
				continue
			}
			uu := u
			s.awaitAck = &uu
			s.ackSeq++
			seq = s.ackSeq
		}
		out = append(out, u.text...)
	}
	s.urcs = kept
	return out, s.gen, seq
}

// ackTimeout applies 27.005's rule for a missing +CNMA: the ME sends
// RP-ERROR (the network keeps the message: pending) and the TA disables
// routing by setting <mt> and <ds> of +CNMI to 0. Messages queued for direct
// routing are re-routed under the new setting.
func (s *Sim) ackTimeout(seq int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.awaitAck == nil || s.ackSeq != seq {
		return
	}
	s.pending = append(s.pending, s.awaitAck.pdu)
	s.awaitAck = nil
	s.set.cnmi[1] = 0
	s.set.cnmi[3] = 0
	s.log.Debug("timed out waiting for +CNMA, disabled +CNMI routing")
	var kept []urc
	var requeue []string
	for _, u := range s.urcs {
		if u.direct() {
			requeue = append(requeue, u.pdu)
			continue
		}
		kept = append(kept, u)
	}
	s.urcs = kept
	for _, pdu := range requeue {
		if err := s.routeHexLocked(pdu); err != nil {
			s.pending = append(s.pending, pdu)
		}
	}
}

// finishPrompt ends PDU input: submit (^Z) or cancel (ESC).
func (s *Sim) finishPrompt(p *prompt, submit bool) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !submit {
		return reply{text: frameFinal("OK")}
	}
	pdu := strings.ToUpper(string(p.buf))
	var info []string
	var final string
	switch p.cmd {
	case "+CMGS":
		info, final = s.submitLocked(p.length, pdu)
	default: // +CNMA=2,<len>: negative acknowledgement with an RP-ERROR PDU
		info, final = s.nackLocked()
	}
	if final == "" {
		final = "OK"
	}
	return reply{text: frame(info, final), delay: s.delayForLocked(p.cmd)}
}

// frame builds the V.250 verbose response: the information text of one
// command as a block, then the final result code.
func frame(info []string, final string) string {
	var b strings.Builder
	if len(info) > 0 {
		b.WriteString("\r\n")
		b.WriteString(strings.Join(info, "\r\n"))
		b.WriteString("\r\n")
	}
	if final != "" {
		b.WriteString(frameFinal(final))
	}
	return b.String()
}

func frameFinal(final string) string { return "\r\n" + final + "\r\n" }

// delayForLocked sums the configured delays whose prefix matches cmd.
func (s *Sim) delayForLocked(cmd string) time.Duration {
	u := strings.ToUpper(cmd)
	var d time.Duration
	for p, v := range s.delays {
		if strings.HasPrefix(u, p) {
			d += v
		}
	}
	return d
}
