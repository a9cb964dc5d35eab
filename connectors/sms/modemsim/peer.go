package modemsim

import (
	"bytes"
	"os"
	"strings"
	"sync"

	"github.com/creack/pty"
)

// Peer is a scripted fake modem on a pty, for tests of exact wire
// behaviour the simulator does not model (late replies, garbage, hung
// modems): for each command line the script returns the raw bytes to
// answer. Commands ending in an SMS body (+CMGS) get a "> " prompt and the
// script sees "AT+CMGS=n|<body>"; an ESC instead of the body answers OK.
// StartPeer starts one goroutine, which Close stops.
type Peer struct {
	master *os.File
	tty    *os.File
	script func(cmd string) string

	mu   sync.Mutex
	cmds []string
	done chan struct{}
}

// StartPeer opens a pty and serves script on it.
func StartPeer(script func(cmd string) string) (*Peer, error) {
	master, tty, err := pty.Open()
	if err != nil {
		return nil, err
	}
	p := &Peer{master: master, tty: tty, script: script, done: make(chan struct{})}
	go p.serve()
	return p, nil
}

// Path is the device path to open.
func (p *Peer) Path() string { return p.tty.Name() }

// Close closes the pty and waits for the serving goroutine.
func (p *Peer) Close() {
	_ = p.master.Close()
	_ = p.tty.Close()
	<-p.done
}

// Write injects raw bytes (URCs, garbage) from the modem side.
func (p *Peer) Write(s string) {
	_, _ = p.master.Write([]byte(s))
}

// Commands returns the command lines received so far.
func (p *Peer) Commands() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.cmds...)
}

func (p *Peer) serve() {
	defer close(p.done)
	buf := make([]byte, 1024)
	var acc []byte
	var smsCmd string
	for {
		n, err := p.master.Read(buf)
		if err != nil {
			return
		}
		acc = append(acc, buf[:n]...)
		acc, smsCmd = p.process(acc, smsCmd)
	}
}

// process answers every complete command in acc and returns what is left
// and the +CMGS command waiting for its body.
func (p *Peer) process(acc []byte, smsCmd string) ([]byte, string) {
	for {
		if smsCmd != "" {
			i := bytes.IndexAny(acc, "\x1a\x1b")
			if i < 0 {
				return acc, smsCmd
			}
			body, term := string(acc[:i]), acc[i]
			acc = acc[i+1:]
			cmd := smsCmd
			smsCmd = ""
			if term == 0x1b {
				p.Write("\r\nOK\r\n")
				continue
			}
			p.record(cmd + "|" + body)
			p.Write(p.script(cmd + "|" + body))
			continue
		}
		i := bytes.IndexByte(acc, '\r')
		if i < 0 {
			return acc, smsCmd
		}
		line := strings.TrimSpace(string(acc[:i]))
		acc = acc[i+1:]
		line = strings.TrimLeft(line, "\x1b\n ")
		if line == "" {
			continue
		}
		if strings.HasPrefix(strings.ToUpper(line), "AT+CMGS=") {
			smsCmd = line
			p.Write("\r\n> ")
			continue
		}
		p.record(line)
		p.Write(p.script(line))
	}
}

func (p *Peer) record(cmd string) {
	p.mu.Lock()
	p.cmds = append(p.cmds, cmd)
	p.mu.Unlock()
}

// OKScript answers OK to everything, with extra answers per command.
func OKScript(answers map[string]string) func(string) string {
	return func(cmd string) string {
		if a, ok := answers[cmd]; ok {
			return a
		}
		return "\r\nOK\r\n"
	}
}
