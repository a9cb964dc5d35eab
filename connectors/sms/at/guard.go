package at

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"go.uber.org/zap"
)

// maxLine bounds a line without a newline; longer garbage is dropped before
// it reaches the at package, whose bufio.Scanner would otherwise stop at
// 64 KiB and make the whole AT engine report the port as closed.
const maxLine = 4096

// guard sits between the port and warthog618's at.AT. It fixes upstream bug 4 (after a
// command timeout the late reply is consumed by the next command) from our
// side: the command wrapper tells it which command was abandoned, and the
// guard then drops every non-URC line up to and including the next final
// result code, so the late answer is never credited to a later command.
// Unsolicited result codes (+CMTI, +CMT with its PDU line, +CDS, RING, ...)
// always pass.
//
// The guard also queues the indications the caller registered (+CMTI,
// +CMT + PDU, +CDSI, +CDS + PDU, ...) in the order they were read: at runs
// each indication handler in its own goroutine (upstream bug 8), so the
// handlers only say "something arrived" and the caller pops the lines from
// here, in wire order.
//
// Write is called by at's command goroutine; Read by at's line reader
// goroutine; the other methods by the command wrapper. mu guards the shared
// counters; buf and out belong to the reading goroutine.
type guard struct {
	port io.ReadWriter
	log  *zap.Logger
	// inds maps the registered indication prefixes to their trailing line
	// count; prefixes lists them longest first, so the most specific wins.
	inds     map[string]int
	prefixes []string

	mu sync.Mutex
	// written counts command lines ("AT...") written to the modem.
	written uint64
	// bodyFor is the value of written when the last SMS body (ending in
	// Ctrl-Z) was written: equal to a +CMGS command's seq means its PDU
	// reached the modem.
	bodyFor uint64
	// lastFinal is the value of written when the last final result code
	// passed to the at package.
	lastFinal uint64
	// extraFor is the value of written when a second final result code for
	// the same command was dropped: no command waited for it. It is how a
	// resynchronisation probe that read a late reply in place of its own
	// learns that its own final already came (see owe).
	extraFor uint64
	// pending counts final result codes still owed by abandoned commands;
	// abandoned lists their sequence numbers, oldest first.
	pending   int
	abandoned []uint64
	// late records, per command sequence number, the "+CMGS: <mr>" line and
	// the final result code seen for it (also when they were dropped as the
	// late reply of an abandoned command), so a timed-out +CMGS whose reply
	// arrives during resynchronisation is credited to its part. Only the
	// most recent few commands are kept.
	late map[uint64]*lateReply
	// drained is closed when pending drops to zero.
	drained chan struct{}
	// urcs are complete indications in wire order, popped by nextURC.
	urcs [][]string

	// Reader state, owned by the goroutine calling Read.
	rbuf    []byte
	buf     []byte
	out     []byte
	trailer int      // lines still to take as the trailer of head (the PDU of +CMT/+CDS)
	head    []string // an indication waiting for its trailing lines
	skip    bool     // dropping the rest of an overlong line
}

func newGuard(port io.ReadWriter, log *zap.Logger, inds map[string]int) *guard {
	d := make(chan struct{})
	close(d)
	g := &guard{port: port, log: log, inds: inds, drained: d, rbuf: make([]byte, 1024)}
	for p := range inds {
		g.prefixes = append(g.prefixes, p)
	}
	slices.SortFunc(g.prefixes, func(a, b string) int { return len(b) - len(a) })
	return g
}

// Write implements io.Writer, counting command lines and SMS bodies.
func (g *guard) Write(p []byte) (int, error) {
	g.mu.Lock()
	switch {
	case len(p) >= 2 && (p[0] == 'A' || p[0] == 'a') && (p[1] == 'T' || p[1] == 't'):
		g.written++
	case len(p) > 0 && p[len(p)-1] == 0x1a:
		g.bodyFor = g.written
	}
	g.mu.Unlock()
	return g.port.Write(p)
}

// Read implements io.Reader. It never returns (0, nil): when every line read
// was dropped it reads again, so at's scanner never sees "no progress".
func (g *guard) Read(p []byte) (int, error) {
	for len(g.out) == 0 {
		n, err := g.port.Read(g.rbuf)
		if n > 0 {
			g.buf = append(g.buf, g.rbuf[:n]...)
			g.process()
		}
		if err != nil {
			if len(g.out) > 0 {
				break
			}
			return 0, err
		}
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	if len(g.out) == 0 {
		g.out = nil
	}
	return n, nil
}

// process moves complete lines from buf to out (or drops them).
func (g *guard) process() {
	for {
		i := bytes.IndexByte(g.buf, '\n')
		if i < 0 {
			break
		}
		raw := g.buf[:i+1]
		g.buf = g.buf[i+1:]
		if g.skip {
			g.skip = false
			continue
		}
		// at is handed the line exactly as the guard classified it:
		// trimmed, so that " OK" or "\rOK" (stray CRs and spaces of some
		// modems) is a final result for both or for neither, and empty
		// lines, which at ignores, not at all.
		line := strings.TrimSpace(string(raw))
		for strings.HasPrefix(line, ">") {
			// at's scanner takes a leading '>' for the +CMGS prompt
			// whatever follows it: so does the guard.
			if g.keep(">") {
				g.out = append(g.out, '>', ' ')
			}
			line = strings.TrimSpace(line[1:])
		}
		if line == "" {
			continue
		}
		if g.keep(line) {
			g.out = append(append(g.out, line...), '\r', '\n')
		}
	}
	for len(g.buf) > 0 && g.buf[0] == '>' && !g.skip {
		// The "> " prompt of +CMGS comes without a line end. at takes
		// the '>' and the spaces after it; what follows (a stray CR, the
		// start of a line) stays here to be read as a line of its own.
		if g.keep(">") {
			g.out = append(g.out, '>', ' ')
		}
		g.buf = bytes.TrimLeft(g.buf[1:], " \r")
	}
	switch {
	case len(g.buf) > maxLine:
		if !g.skip {
			g.log.Debug("dropped overlong line from modem", zap.Int("bytes", len(g.buf)))
		}
		g.skip = true
		g.buf = nil
	}
	if len(g.buf) == 0 {
		g.buf = nil
	}
}

// keep classifies one line and reports whether at should see it.
func (g *guard) keep(line string) bool {
	if g.trailer > 0 {
		// Like at's indication loop, take the very next lines.
		g.trailer--
		g.head = append(g.head, line)
		if g.trailer == 0 {
			g.queueURC(g.head...)
			g.head = nil
		}
		return true
	}
	if line == "" {
		return true
	}
	if urc := g.urcPrefix(line); urc != "" {
		if n, ok := g.inds[urc]; ok {
			if n > 0 {
				g.trailer, g.head = n, []string{line}
			} else {
				g.queueURC(line)
			}
		}
		return true
	}
	final := isFinal(line)
	g.mu.Lock()
	defer g.mu.Unlock()
	owner := g.written
	if g.pending > 0 && len(g.abandoned) > 0 {
		owner = g.abandoned[0]
	}
	if strings.HasPrefix(line, "+CMGS:") || final {
		g.recordLate(owner, line, final)
	}
	if g.pending == 0 {
		if !final {
			return true
		}
		if g.lastFinal == g.written {
			// Every command written has had its final: this one answers
			// none. Passed on, it could reach at just as the next command
			// starts and be taken as that command's answer.
			g.extraFor = g.written
			g.log.Info("discarded a final result code no command waits for", zap.String("line", line))
			return false
		}
		g.lastFinal = g.written
		return true
	}
	g.log.Info("discarded late modem reply of an abandoned command", zap.String("line", LogLine(line)))
	if final {
		g.pending--
		if len(g.abandoned) > 0 {
			g.abandoned = g.abandoned[1:]
		}
		if g.pending == 0 {
			g.abandoned = nil
			close(g.drained)
		}
	}
	return false
}

// lateReply is what the guard saw for one command: its +CMGS line and its
// final result code.
type lateReply struct {
	cmgs  string
	final string
}

// recordLate notes a +CMGS line or a final result code of command seq.
// Called with mu held.
func (g *guard) recordLate(seq uint64, line string, final bool) {
	if g.late == nil {
		g.late = map[uint64]*lateReply{}
	}
	r := g.late[seq]
	if r == nil {
		r = &lateReply{}
		g.late[seq] = r
		for k := range g.late {
			if k+16 < seq {
				delete(g.late, k)
			}
		}
	}
	if final {
		if r.final == "" {
			r.final = line
		}
	} else if r.cmgs == "" {
		r.cmgs = line
	}
}

// reply returns what was seen for command seq: its +CMGS line and final
// result code ("" when none came).
func (g *guard) reply(seq uint64) (cmgs, final string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r := g.late[seq]; r != nil {
		return r.cmgs, r.final
	}
	return "", ""
}

func (g *guard) queueURC(lines ...string) {
	g.mu.Lock()
	g.urcs = append(g.urcs, lines)
	g.mu.Unlock()
}

// nextURC pops the oldest queued indication, or nil.
func (g *guard) nextURC() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.urcs) == 0 {
		return nil
	}
	u := g.urcs[0]
	g.urcs = g.urcs[1:]
	if len(g.urcs) == 0 {
		g.urcs = nil
	}
	return u
}

// seq returns the number of command lines written so far; the next command
// written gets seq()+1.
func (g *guard) seq() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.written
}

// bodySent reports whether the SMS body of command seq was written.
func (g *guard) bodySent(seq uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.bodyFor == seq
}

// abandon records that command seq timed out: its final result code, when
// it comes, must be dropped. If a final already passed while seq was the
// latest command, the reply raced the timeout and at already discarded it,
// so nothing is owed.
func (g *guard) abandon(seq uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lastFinal >= seq {
		return
	}
	if g.pending == 0 {
		g.drained = make(chan struct{})
	}
	g.pending++
	g.abandoned = append(g.abandoned, seq)
}

// owe records that the final of command seq is still to come and must be
// dropped, unless it already came and was dropped as a final no command
// waited for.
func (g *guard) owe(seq uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.extraFor >= seq {
		return
	}
	if g.pending == 0 {
		g.drained = make(chan struct{})
	}
	g.pending++
	g.abandoned = append(g.abandoned, seq)
}

// owed returns the number of finals still owed and a channel closed when
// none are.
func (g *guard) owed() (int, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending, g.drained
}

// forgive gives up on the owed finals: the modem dropped those commands.
func (g *guard) forgive() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pending > 0 {
		g.pending = 0
		g.abandoned = nil
		close(g.drained)
	}
}

// urcPrefixes are unsolicited result codes that may arrive at any time and
// must never be swallowed or mistaken for command output.
var urcPrefixes = []string{
	"+CMTI:", "+CMT:", "+CDSI:", "+CDS:", "+CBM:", "+CBMI:",
	"RING", "+CRING:", "+CLIP:", "+CUSD:", "+CIEV:",
	"+CREG:", "+CGREG:", "+CEREG:", "+CPIN:",
	"^", // Huawei ^RSSI, ^BOOT, ^MODE, ...
	"+QIND:", "SMS Ready", "Call Ready", "+PBREADY",
}

// urcPrefix returns the URC prefix line starts with, or "": a registered
// indication first, then the codes every modem may send unasked.
func (g *guard) urcPrefix(line string) string {
	for _, p := range g.prefixes {
		if strings.HasPrefix(line, p) {
			return p
		}
	}
	for _, p := range urcPrefixes {
		if strings.HasPrefix(line, p) {
			return p
		}
	}
	return ""
}

// isFinal reports whether line is a final result code of a command.
func isFinal(line string) bool {
	return line == "OK" || line == "ERROR" ||
		strings.HasPrefix(line, "+CMS ERROR:") || strings.HasPrefix(line, "+CME ERROR:")
}

// Redact hides a PIN or PUK in an echoed or logged command line.
func Redact(line string) string {
	u := strings.ToUpper(line)
	if i := strings.Index(u, "+CPIN="); i >= 0 {
		return line[:i] + "+CPIN=<redacted>"
	}
	if i := strings.Index(u, "+CPIN2="); i >= 0 {
		return line[:i] + "+CPIN2=<redacted>"
	}
	return line
}

// LogLine is how a modem line may appear in a log line at info or above:
// Redact's, and a PDU (a long even run of hex digits: it carries a number
// and a text in semi-octets no log mask recognises) only as its length and
// the first 12 hex digits of the SHA-256 of its hex form.
func LogLine(line string) string {
	if !isHexPDU(line) {
		return Redact(line)
	}
	sum := sha256.Sum256([]byte(line))
	return fmt.Sprintf("<PDU of %d bytes, sha256 %s>", len(line)/2, hex.EncodeToString(sum[:6]))
}

// isHexPDU reports whether line looks like a PDU: at least 12 bytes of hex.
func isHexPDU(line string) bool {
	if len(line) < 24 || len(line)%2 != 0 {
		return false
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
