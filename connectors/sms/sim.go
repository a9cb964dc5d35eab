package sms

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/connectors/sms/at"
)

// connect opens the port and initialises the modem.
func (k *link) connect(ctx context.Context) (*at.Session, error) {
	port, desc, err := at.OpenPort(ctx, k.cfg.Device, k.cfg.Baud)
	if err != nil {
		return nil, err
	}
	m := at.New(port, at.Options{Timeout: k.cfg.CommandTimeout, Indications: indications, Notify: k.notify, Log: k.log})
	if err := k.initModem(ctx, m); err != nil {
		_ = m.Close()
		return nil, fmt.Errorf("initialise modem on %s: %w", desc, err)
	}
	k.log.Info("opened modem", zap.String("device", desc))
	return m, nil
}

// indications are the unsolicited result codes the Line handles, with the
// number of trailing lines (the PDU) each carries.
var indications = map[string]int{
	"+CMTI:": 0, "+CMT:": 1, "+CDSI:": 0, "+CDS:": 1,
	"+CUSD:": 0, "RING": 0, "+CLIP:": 0,
}

// initModem brings a freshly opened modem to a known state.
func (k *link) initModem(ctx context.Context, m *at.Session) error {
	m.Escape()
	// ATZ reloads the stored profile (not the factory one); everything we
	// rely on is set again below, so its errors are harmless.
	steps := []struct {
		cmd, refused string
		timeoutFatal bool
	}{
		{"Z", "", true},
		{"E0", "modem refused ATE0; continuing with echo", true},
		{"+CMEE=1", "modem refused AT+CMEE=1; errors will be plain ERROR", false},
	}
	for _, s := range steps {
		if _, err := m.Command(ctx, s.cmd, 0); err != nil {
			if errors.Is(err, ErrClosed) || (s.timeoutFatal && errors.Is(err, ErrTimeout)) || ctx.Err() != nil {
				return err
			}
			if s.refused == "" {
				k.log.Debug("ignored ATZ failure", zap.Error(err))
			} else {
				k.log.Warn(s.refused, zap.Error(err))
			}
		}
	}
	k.mu.Lock()
	k.pduMode = false
	k.mu.Unlock()

	status, err := k.pinStatus(ctx, m)
	if err != nil {
		k.log.Warn("could not read SIM PIN status", zap.Error(err))
	}
	if status == "SIM PIN" {
		k.mu.Lock()
		pin, tried := k.pin, k.pinTried
		if pin == "" && k.cfg.PIN != "" && !tried {
			pin = k.cfg.PIN
			k.pinTried = true
		}
		k.mu.Unlock()
		if pin != "" {
			if err := k.enterPIN(ctx, m, pin); err != nil {
				return fmt.Errorf("enter the configured SIM PIN: %w", err)
			}
			status = "READY"
		} else {
			k.log.Warn("SIM needs a PIN; set it in the config or enter it with EnterPIN")
		}
	}
	if status == "SIM PUK" {
		k.log.Error("SIM is blocked: it needs its PUK (no PIN is tried); unblock it in a phone", zap.Error(ErrPUKRequired))
	}
	if status != "" && status != "READY" {
		k.log.Info("left SMS setup for later: SIM not ready", zap.String("sim", status))
		return nil
	}
	if err := k.ensurePDU(ctx, m); err != nil {
		return err
	}
	k.setUpBearer(ctx, m)
	return nil
}

// ensurePDU selects PDU mode once per modem.
func (k *link) ensurePDU(ctx context.Context, m *at.Session) error {
	k.mu.Lock()
	done := k.pduMode
	k.mu.Unlock()
	if done {
		return nil
	}
	if _, err := m.Command(ctx, "+CMGF=0", 0); err != nil {
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrTimeout) || ctx.Err() != nil {
			return err
		}
		if st, perr := k.pinStatus(ctx, m); perr == nil && st != "READY" {
			return fmt.Errorf("select PDU mode: SIM not ready (%s): %w", st, err)
		}
		return fmt.Errorf("%w: %w", ErrNoPDUMode, err)
	}
	k.mu.Lock()
	k.pduMode = true
	k.mu.Unlock()
	return nil
}

// PINStatus returns the SIM state from AT+CPIN?: "READY", "SIM PIN",
// "SIM PUK", ...
func (l *Line) PINStatus(ctx context.Context) (string, error) {
	m, err := l.current()
	if err != nil {
		return "", err
	}
	return l.pinStatus(ctx, m)
}

func (k *link) pinStatus(ctx context.Context, m *at.Session) (string, error) {
	info, err := m.Command(ctx, "+CPIN?", 0)
	if err != nil {
		if c := at.CMECode(err); c == 10 || at.CMSCode(err) == 310 {
			return "", fmt.Errorf("read SIM status: no SIM inserted: %w", err)
		}
		return "", fmt.Errorf("read SIM status: %w", err)
	}
	for _, line := range info {
		if v, ok := strings.CutPrefix(line, "+CPIN:"); ok {
			return strings.Trim(strings.TrimSpace(v), `"`), nil
		}
	}
	return "", errors.New("read SIM status: the modem gave no +CPIN line")
}

var pinRE = regexp.MustCompile(`^[0-9]{4,8}$`)

// EnterPIN unlocks the SIM with pin (4-8 digits) and then selects PDU mode.
// A wrong PIN returns the modem's error (usually +CME ERROR: 16); the SIM
// blocks after three wrong PINs, so callers must not retry blindly.
func (l *Line) EnterPIN(ctx context.Context, pin string) error {
	if !pinRE.MatchString(pin) {
		return errors.New("enter SIM PIN: a PIN is 4 to 8 digits")
	}
	m, err := l.current()
	if err != nil {
		return err
	}
	if st, err := l.pinStatus(ctx, m); err == nil && st == "SIM PUK" {
		return fmt.Errorf("enter SIM PIN: %w", ErrPUKRequired)
	}
	if err := l.enterPIN(ctx, m, pin); err != nil {
		if st, serr := l.pinStatus(ctx, m); serr == nil && st == "SIM PUK" {
			return fmt.Errorf("enter SIM PIN: %w: %w", ErrPUKRequired, err)
		}
		return fmt.Errorf("enter SIM PIN: %w", err)
	}
	if err := l.ensurePDU(ctx, m); err != nil {
		return err
	}
	l.broadcast()
	return nil
}

func (k *link) enterPIN(ctx context.Context, m *at.Session, pin string) error {
	if !pinRE.MatchString(pin) {
		return errors.New("a PIN is 4 to 8 digits")
	}
	if _, err := m.Command(ctx, `+CPIN="`+pin+`"`, 0); err != nil {
		if at.CMECode(err) == 16 {
			return fmt.Errorf("the SIM rejected the PIN (check it; the SIM blocks after 3 wrong tries): %w", err)
		}
		return err
	}
	k.mu.Lock()
	k.pin = pin
	k.mu.Unlock()
	// The SIM takes a moment to become ready after the PIN.
	for i := 0; ; i++ {
		st, err := k.pinStatus(ctx, m)
		if err == nil && st == "READY" {
			k.log.Info("unlocked SIM")
			return nil
		}
		if i >= 20 {
			return fmt.Errorf("SIM not ready after the PIN (status %q): %w", st, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-k.after(250 * time.Millisecond):
		}
	}
}

// OwnNumber returns Config.OwnNumber if set, else the first number of
// AT+CNUM ("+E164" for international numbers), or "" when the SIM does not
// know it.
func (l *Line) OwnNumber(ctx context.Context) (string, error) {
	if l.cfg.OwnNumber != "" {
		return l.cfg.OwnNumber, nil
	}
	m, err := l.current()
	if err != nil {
		return "", err
	}
	info, err := m.Command(ctx, "+CNUM", 0)
	if err != nil {
		if at.IsRefusal(err) {
			l.log.Debug("modem does not know its own number", zap.Error(err))
			return "", nil
		}
		return "", fmt.Errorf("read own number: %w", err)
	}
	for _, line := range info {
		v, ok := strings.CutPrefix(line, "+CNUM:")
		if !ok {
			continue
		}
		p := at.SplitParams(v)
		if len(p) < 2 || p[1] == "" {
			continue
		}
		num := p[1]
		if len(p) >= 3 && p[2] == "145" && !strings.HasPrefix(num, "+") {
			num = "+" + num
		}
		return num, nil
	}
	return "", nil
}
