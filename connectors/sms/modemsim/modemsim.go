// Package modemsim is an AT-command GSM modem simulator that serves on a real
// pseudo-terminal, for tests and for the no-hardware trial.
//
// The host side opens Sim.Path (a /dev/pts/N slave) with an ordinary serial
// library and talks AT to it exactly as it would to a USB modem. The simulator
// models the SMS parts of 3GPP TS 27.005 (PDU mode only), the SIM and
// identification parts of 3GPP TS 27.007 and the command-line and result-code
// framing of ITU-T V.250. See README.md for what is modelled and what is
// simplified.
//
// Test code plays the network: Deliver/DeliverPDU/StoreOnly put mobile
// terminated messages into the modem, Sent/WaitSent observe what the host
// submitted with AT+CMGS, and FailNextCMGS, SetDelay, Hang, Unplug and Replug
// inject faults.
package modemsim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/creack/pty"
	"github.com/warthog618/sms"
	"github.com/warthog618/sms/encoding/tpdu"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Default values used when the corresponding Options field is zero.
const (
	// DefaultStorage is the message memory name ("SM", the SIM).
	DefaultStorage = "SM"
	// DefaultStorageSize is the number of message slots.
	DefaultStorageSize = 30
	// DefaultSMSC is the service centre address (+CSCA).
	DefaultSMSC = "+15550000000"
	// DefaultCNMIModes accepts the common 27.005 +CNMI values.
	DefaultCNMIModes = "(0-3),(0-3),(0,2),(0-2),(0,1)"
	// DefaultCNMI is the +CNMI setting at power-up (Quectel EC25's default).
	DefaultCNMI = "2,1,0,0,0"
	// DefaultAckTimeout is how long a +CMT/+CDS waits for +CNMA.
	DefaultAckTimeout = 5 * time.Second
	// DefaultPUK unblocks the SIM after three wrong PINs.
	DefaultPUK = "12345678"
)

// ErrStoreFull is wrapped by Deliver, DeliverPDU, StoreOnly and
// DeliverStatusReport when the message storage has no free slot for the
// message (the network would get RP-ERROR "memory capacity exceeded").
var ErrStoreFull = errors.New("modem message storage is full")

// ErrUnplugged is wrapped by the delivery methods while the modem is
// unplugged (powered off: the network cannot reach it).
var ErrUnplugged = errors.New("modem is unplugged")

// ErrSIMLocked is wrapped by the delivery methods while the SIM waits for its
// PIN or PUK: the modem is not registered, so the network cannot reach it.
var ErrSIMLocked = errors.New("SIM is locked (PIN/PUK not entered), modem not registered")

// ErrClosed is returned by methods called after Close.
var ErrClosed = errors.New("modem simulator is closed")

// Options configures a simulated modem. The zero value is a usable modem with
// a ready SIM, echo off at power-up, storage "SM" of 30 slots and
// +CNMI=2,1,0,0,0 (store and notify, like a Quectel EC25 out of the box).
type Options struct {
	// OwnNumber is answered by AT+CNUM; "" makes +CNUM return OK with no
	// information lines (SIM without MSISDN, common in practice).
	OwnNumber string
	// Subscriber is the SIM's number on the simulated network (its MSISDN),
	// default OwnNumber. It may differ from what +CNUM says (a SIM without
	// MSISDN, or one written by its user): like a real network, an SMS the
	// host submits to Subscriber comes back to this SIM as an SMS-DELIVER
	// from Subscriber, routed per +CNMI like any other.
	Subscriber string
	// PIN, when set, locks the SIM at power-up: +CPIN? says "SIM PIN" until
	// AT+CPIN="<PIN>" is given. Three wrong PINs switch to "SIM PUK".
	PIN string
	// PUK unblocks the SIM with AT+CPIN="<PUK>","<new PIN>"; default
	// DefaultPUK.
	PUK string
	// NoCSMS makes AT+CSMS=1 answer ERROR (phase 2+ acknowledgement not
	// supported, as on several real modems); +CNMA is then never required.
	NoCSMS bool
	// CNMIModes lists the accepted +CNMI parameter values in the syntax of
	// the "+CNMI=?" answer, e.g. "(0-2),(0-2),(0),(0-1),(0,1)". Values
	// outside it are refused with +CMS ERROR: 303. Default DefaultCNMIModes.
	CNMIModes string
	// DefaultCNMI is the +CNMI setting after power-up and ATZ, default
	// DefaultCNMI ("2,1,0,0,0").
	DefaultCNMI string
	// Storage is the name of the single message memory (for +CPMS, +CMTI),
	// default "SM". Other memory names are refused with +CMS ERROR: 302.
	Storage string
	// StorageSize is the number of message slots, default 30.
	StorageSize int
	// ZeroBasedIndex numbers storage slots from 0 (Huawei, some Quectel
	// memories) instead of 1 (SIM800, most modems' "SM").
	ZeroBasedIndex bool
	// Echo is the echo state (ATE1) at power-up and after ATZ. Real modems
	// start with echo on; the zero value starts with echo off.
	Echo bool
	// SMSC is the service centre address answered by +CSCA? and used in the
	// SMSC field of delivered PDUs, default DefaultSMSC.
	SMSC string
	// AckTimeout is how long a +CMT/+CDS waits for AT+CNMA when +CSMS=1,
	// default DefaultAckTimeout (real networks: tens of seconds).
	AckTimeout time.Duration
	// Log receives debug logs of the traffic; nil logs nothing. Phone
	// numbers and PDUs are logged only at debug level.
	Log *zap.Logger
}

// Sent is one complete outbound message the host submitted with AT+CMGS,
// reassembled from its parts. It is decoded with warthog618/sms directly,
// independently of the bridge's own PDU codec.
type Sent struct {
	To           string   `json:"to"`            // TP-DA, "+E164" for international numbers
	Text         string   `json:"text"`          // decoded text of all parts
	Parts        int      `json:"parts"`         // number of parts
	MRs          []int    `json:"mrs"`           // TP-MR answered in "+CMGS: <mr>" for each part, in part order
	PDUs         []string `json:"pdus"`          // the PDUs as the host sent them (SMSC field + TPDU), upper-case hex, in part order
	StatusReport bool     `json:"status_report"` // TP-SRR was set (on any part)
	ConcatRef    int      `json:"concat_ref"`    // concatenation reference, 0 for single-part messages
}

// StoredMessage is one occupied slot of the message storage.
type StoredMessage struct {
	Index int    `json:"index"` // as shown in +CMGR/+CMGL/+CMTI
	Stat  int    `json:"stat"`  // 0 REC UNREAD, 1 REC READ (27.005 <stat> in PDU mode)
	PDU   string `json:"pdu"`   // SMSC field + TPDU, upper-case hex
}

// Sim is a running simulated modem. All methods are safe for concurrent use.
// Start starts two goroutines per Sim (the protocol engine and the pty
// reader); Close stops and waits for both.
type Sim struct {
	opts      Options
	log       *zap.Logger
	cnmiAllow [5]map[int]bool

	stop chan struct{}  // closed by Close
	kick chan struct{}  // wakes the engine to flush URCs (buffered 1)
	in   chan ptyChunk  // bytes from the pty reader to the engine
	wg   sync.WaitGroup // engine and readers

	// mu guards everything below. The engine goroutine holds it while it
	// executes a command; it never holds it while writing to the pty or
	// sleeping.
	mu     sync.Mutex
	closed bool
	master *os.File // nil while unplugged
	slave  *os.File // held open so the host can close/reopen the port
	// retired are the slaves of unplugged ptys, held until Close: while a
	// slave is open the kernel keeps its /dev/pts number, so a host still
	// retrying the old path finds nothing there instead of a pty another
	// simulator (or test process) was given since.
	retired   []*os.File
	path      string
	gen       int // pty generation, bumped by Replug
	unplugged bool
	links     []string

	set settings // volatile modem settings, reset by ATZ/power cycle

	pinState pinState
	pinTries int
	pukTries int
	pin      string

	slots   []*slot
	smsc    string
	mr      int // last TP-MR used
	encoder *sms.Encoder
	pending []string // MT PDUs the network still holds (not acknowledged)

	sent       []Sent
	partial    map[string][]submitPart
	submits    []submitPart // every accepted part, for status reports
	sentSignal chan struct{}

	pdp map[int]*pdpContext // +CGDCONT contexts (kept across ATZ, like a modem's NV)

	failNext []int
	delays   map[string]time.Duration
	hung     bool
	x        extras // faults and network state added for the line's recovery tests
	cmds     []string

	urcs     []urc // URCs waiting to be written between commands
	awaitAck *urc  // the +CMT/+CDS waiting for +CNMA
	ackSeq   int
}

type pinState int

const (
	simReady pinState = iota
	simPIN
	simPUK
)

type settings struct {
	echo  bool
	cmee  int
	csms  int
	cnmi  [5]int
	creg  int
	cmms  int
	cscs  string
	cfun  int
	sregs map[int]int
}

type slot struct {
	pdu  string
	tlen int
	stat int
}

type submitPart struct {
	to    string
	mr    int
	pdu   string
	seq   int
	total int
	ref   int
	srr   bool
	at    time.Time
	t     *tpdu.TPDU
}

type ptyChunk struct {
	gen  int
	data []byte
	err  error
}

// Start opens a pty pair and starts serving AT commands on its master side.
// The host opens Path() (the slave) with go.bug.st/serial or any serial
// library. Start does not block; call Close to stop.
func Start(opts Options) (*Sim, error) {
	if opts.Storage == "" {
		opts.Storage = DefaultStorage
	}
	opts.Storage = strings.ToUpper(opts.Storage)
	if opts.StorageSize <= 0 {
		opts.StorageSize = DefaultStorageSize
	}
	if opts.StorageSize > 255 {
		return nil, fmt.Errorf("start modem simulator: StorageSize %d is above 255: use a smaller storage", opts.StorageSize)
	}
	if opts.SMSC == "" {
		opts.SMSC = DefaultSMSC
	}
	if opts.CNMIModes == "" {
		opts.CNMIModes = DefaultCNMIModes
	}
	if opts.DefaultCNMI == "" {
		opts.DefaultCNMI = DefaultCNMI
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = DefaultAckTimeout
	}
	if opts.PUK == "" {
		opts.PUK = DefaultPUK
	}
	log := opts.Log
	if log == nil {
		log = zap.NewNop()
	}
	allow, err := parseCNMIModes(opts.CNMIModes)
	if err != nil {
		return nil, fmt.Errorf("start modem simulator: Options.CNMIModes %q: %w", opts.CNMIModes, err)
	}
	if _, err := parseCNMIValue(opts.DefaultCNMI, allow); err != nil {
		return nil, fmt.Errorf("start modem simulator: Options.DefaultCNMI %q: %w", opts.DefaultCNMI, err)
	}
	s := &Sim{
		opts:       opts,
		log:        log,
		cnmiAllow:  allow,
		stop:       make(chan struct{}),
		kick:       make(chan struct{}, 1),
		in:         make(chan ptyChunk),
		slots:      make([]*slot, opts.StorageSize),
		smsc:       opts.SMSC,
		pin:        opts.PIN,
		encoder:    sms.NewEncoder(sms.AsDeliver),
		partial:    map[string][]submitPart{},
		sentSignal: make(chan struct{}),
		delays:     map[string]time.Duration{},
	}
	s.mu.Lock()
	s.powerOnLocked()
	err = s.openPTYLocked()
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go s.engine()
	return s, nil
}

// powerOnLocked resets the volatile state like a power cycle.
func (s *Sim) powerOnLocked() {
	s.requeueInFlightLocked()
	s.urcs = nil
	s.resetSettingsLocked()
	s.set.cfun = 1
	switch {
	case s.pinState == simPUK:
		// PUK lock survives a power cycle.
	case s.pin != "":
		s.pinState = simPIN
		s.pinTries = 0
	default:
		s.pinState = simReady
	}
	s.hung = false
	s.x.hangUntilZ = false
	s.x.wedged = false
	s.x.dropNext = 0
	s.x.clip = false
	s.x.stopRingingLocked()
}

// resetSettingsLocked applies the power-up profile (also ATZ and AT&F).
func (s *Sim) resetSettingsLocked() {
	cnmi, _ := parseCNMIValue(s.opts.DefaultCNMI, s.cnmiAllow)
	cfun := s.set.cfun // functionality level is not part of the profile
	s.set = settings{echo: s.opts.Echo, cnmi: cnmi, cscs: "GSM", cfun: cfun}
}

// requeueInFlightLocked hands every routed-but-unacknowledged message back to
// the network (pending), as happens when the modem loses power or is reset.
func (s *Sim) requeueInFlightLocked() {
	if s.awaitAck != nil {
		s.pending = append(s.pending, s.awaitAck.pdu)
		s.awaitAck = nil
	}
	var kept []urc
	for _, u := range s.urcs {
		if u.direct() {
			s.pending = append(s.pending, u.pdu)
			continue
		}
		kept = append(kept, u)
	}
	s.urcs = kept
}

func (s *Sim) openPTYLocked() error {
	master, slave, err := pty.Open()
	if err != nil {
		return fmt.Errorf("open pty pair: %w (is /dev/ptmx available?)", err)
	}
	// pty.Open used Fd() on the master, which switched it to blocking mode,
	// so Close would not interrupt a pending Read. Re-open it through a
	// non-blocking duplicate so it is served by the runtime poller.
	fd, err := unix.Dup(int(master.Fd()))
	if err != nil {
		master.Close()
		slave.Close()
		return fmt.Errorf("duplicate pty master: %w", err)
	}
	master.Close()
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		slave.Close()
		return fmt.Errorf("set pty master non-blocking: %w", err)
	}
	m := os.NewFile(uintptr(fd), "/dev/ptmx")
	if err := makeRaw(slave); err != nil {
		m.Close()
		slave.Close()
		return err
	}
	s.gen++
	s.master = m
	s.slave = slave
	s.path = slave.Name()
	s.unplugged = false
	for _, l := range s.links {
		if err := replaceSymlink(s.path, l); err != nil {
			s.log.Warn("failed to update pty symlink", zap.String("link", l), zap.Error(err))
		}
	}
	s.wg.Add(1)
	go s.reader(s.gen, m)
	s.log.Debug("opened pty", zap.String("path", s.path))
	return nil
}

// makeRaw puts the slave side's line discipline in raw mode: no echo, no
// CR/NL translation, no signals, 8 bit, byte-at-a-time reads (cfmakeraw).
func makeRaw(f *os.File) error {
	fd := int(f.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("read pty termios: %w", err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("set pty raw mode: %w", err)
	}
	return nil
}

func replaceSymlink(target, link string) error {
	if fi, err := os.Lstat(link); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("%s exists and is not a symlink: remove it or choose another path", link)
	}
	tmp := filepath.Join(filepath.Dir(link), fmt.Sprintf(".%s.%d.tmp", filepath.Base(link), os.Getpid()))
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// reader copies bytes from one pty master generation to the engine. It ends
// when the master is closed (Unplug, Replug, Close) or fails.
func (s *Sim) reader(gen int, m *os.File) {
	defer s.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, err := m.Read(buf)
		if n > 0 {
			data := append([]byte(nil), buf[:n]...)
			select {
			case s.in <- ptyChunk{gen: gen, data: data}:
			case <-s.stop:
				return
			}
		}
		if err != nil {
			select {
			case s.in <- ptyChunk{gen: gen, err: err}:
			case <-s.stop:
			}
			return
		}
	}
}

// Path returns the pty slave path the host opens, e.g. /dev/pts/7. It
// changes on Replug.
func (s *Sim) Path() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.path
}

// Link creates (or replaces) a symlink at path pointing to the current pty
// slave; Replug updates it and Close removes it.
func (s *Sim) Link(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := replaceSymlink(s.path, path); err != nil {
		return fmt.Errorf("link %s to %s: %w", path, s.path, err)
	}
	s.links = append(s.links, path)
	return nil
}

// Unplug closes the pty (like pulling the USB modem out): the host's reads
// and writes fail. The message storage and SIM state are kept; Replug brings
// the modem back on a new pty.
func (s *Sim) Unplug() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unplugLocked()
}

func (s *Sim) unplugLocked() {
	if s.master == nil {
		return
	}
	s.master.Close() // the host's port hangs up and /dev/pts/N disappears
	s.retired = append(s.retired, s.slave)
	s.master = nil
	s.slave = nil
	s.unplugged = true
	s.requeueInFlightLocked()
	s.urcs = nil
	s.log.Debug("unplugged modem")
}

// Replug powers the modem up again on a new pty (new Path; symlinks made
// with Link are updated). Storage, the SIM's PIN/PUK state, the SMSC and the
// TP-MR counter persist; volatile settings (echo, +CMEE, +CNMI, +CSMS, PIN
// entry) are reset like a power cycle. Replug on a plugged modem power
// cycles it.
func (s *Sim) Replug() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.unplugLocked()
	s.powerOnLocked()
	return s.openPTYLocked()
}

// Close stops the simulator, closes the pty and removes the symlinks made
// by Link. It waits for its goroutines.
func (s *Sim) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	if s.master != nil {
		s.master.Close()
		s.slave.Close()
		s.master, s.slave = nil, nil
	}
	for _, f := range s.retired {
		f.Close()
	}
	s.retired = nil
	for _, l := range s.links {
		if t, err := os.Readlink(l); err == nil && strings.HasPrefix(t, "/dev/") {
			_ = os.Remove(l)
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Sent returns the complete messages the host submitted, in order of their
// last part.
func (s *Sim) Sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sent(nil), s.sent...)
}

// WaitSent waits until at least n complete messages were submitted and
// returns all of them, or returns ctx's error.
func (s *Sim) WaitSent(ctx context.Context, n int) ([]Sent, error) {
	for {
		s.mu.Lock()
		if len(s.sent) >= n {
			out := append([]Sent(nil), s.sent...)
			s.mu.Unlock()
			return out, nil
		}
		ch := s.sentSignal
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for %d sent messages: %w", n, ctx.Err())
		case <-s.stop:
			return nil, ErrClosed
		}
	}
}

// Stored returns the number of messages currently in storage.
func (s *Sim) Stored() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.slots {
		if m != nil {
			n++
		}
	}
	return n
}

// Messages returns the occupied storage slots in index order.
func (s *Sim) Messages() []StoredMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []StoredMessage
	for i, m := range s.slots {
		if m != nil {
			out = append(out, StoredMessage{Index: s.indexOf(i), Stat: m.stat, PDU: m.pdu})
		}
	}
	return out
}

// Pending returns the mobile-terminated PDUs the network still holds because
// the modem did not acknowledge them (+CNMA timeout, AT+CNMA=2, power loss
// while waiting). RedeliverPending retries them.
func (s *Sim) Pending() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.pending...)
}

// RedeliverPending makes the network retry every pending PDU under the
// current +CNMI routing. PDUs that still cannot be delivered stay pending.
func (s *Sim) RedeliverPending() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reachableLocked(); err != nil {
		return fmt.Errorf("redeliver pending messages: %w", err)
	}
	p := s.pending
	s.pending = nil
	var errs []error
	for _, pdu := range p {
		if err := s.routeHexLocked(pdu); err != nil {
			s.pending = append(s.pending, pdu)
			errs = append(errs, err)
		}
	}
	s.kickEngine()
	return errors.Join(errs...)
}

// CNMI returns the current +CNMI setting as "<mode>,<mt>,<bm>,<ds>,<bfr>".
func (s *Sim) CNMI() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return formatInts(s.set.cnmi[:])
}

// Commands returns the command lines received so far (as typed, without the
// terminator, at most the last 10000), including those received while hung.
func (s *Sim) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.cmds...)
}

// FailNextCMGS makes the next AT+CMGS with a valid PDU answer
// "+CMS ERROR: <cmsCode>" (shaped by +CMEE) instead of sending it. Calls
// queue up: each applies to one +CMGS.
func (s *Sim) FailNextCMGS(cmsCode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = append(s.failNext, cmsCode)
}

// SetDelay delays the final result of every command starting with cmdPrefix
// (e.g. "+CMGS", "AT+CPMS?", case-insensitive) by d; d <= 0 removes it. For
// +CMGS the delay runs after the PDU was accepted (network latency).
func (s *Sim) SetDelay(cmdPrefix string, d time.Duration) {
	p := strings.ToUpper(strings.TrimSpace(cmdPrefix))
	p = strings.TrimPrefix(p, "AT")
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		delete(s.delays, p)
		return
	}
	s.delays[p] = d
}

// Hang makes the modem stop answering (on) or resume (off). While hung it
// reads and logs input but writes nothing and changes no state; URCs wait.
func (s *Sim) Hang(on bool) {
	s.mu.Lock()
	s.hung = on
	s.mu.Unlock()
	s.kickEngine()
}

func (s *Sim) kickEngine() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Sim) indexOf(slotNo int) int {
	if s.opts.ZeroBasedIndex {
		return slotNo
	}
	return slotNo + 1
}

func (s *Sim) slotOf(index int) (int, bool) {
	if !s.opts.ZeroBasedIndex {
		index--
	}
	if index < 0 || index >= len(s.slots) {
		return 0, false
	}
	return index, true
}

func formatInts(v []int) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ",")
}
