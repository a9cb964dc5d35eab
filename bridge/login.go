package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"

	"github.com/bubbled/bubbled/config"
	"github.com/bubbled/bubbled/connectors/phone"
	"github.com/bubbled/bubbled/connectors/sms"
)

// Login flow and step IDs.
const (
	flowModem       = "modem"
	stepSelectModem = "com.github.bubbled.modem.select"
	stepPIN         = "com.github.bubbled.modem.pin"
	stepNumber      = "com.github.bubbled.modem.number"
	stepComplete    = "com.github.bubbled.modem.complete"
)

// GetLoginFlows offers one flow: pick a modem (a phone line).
func (c *Connector) GetLoginFlows() []bridgev2.LoginFlow {
	return []bridgev2.LoginFlow{{
		Name:        "USB modem",
		Description: "Use a GSM modem with a SIM card attached to this machine as your phone line.",
		ID:          flowModem,
	}}
}

// CreateLogin starts the modem login flow for a user.
func (c *Connector) CreateLogin(ctx context.Context, user *bridgev2.User, flowID string) (bridgev2.LoginProcess, error) {
	if flowID != flowModem {
		return nil, fmt.Errorf("unknown login flow %q; use %q", flowID, flowModem)
	}
	return &modemLogin{conn: c, user: user, log: c.log.With(zap.String("login_user", string(user.MXID)))}, nil
}

// modemLogin is one run of the modem login flow. bridgev2 calls its methods
// one at a time.
type modemLogin struct {
	conn *Connector
	user *bridgev2.User
	log  *zap.Logger

	modem   config.Modem
	claimed string
	line    *sms.Line
	hooks   *lineHooks
}

var _ bridgev2.LoginProcessUserInput = (*modemLogin)(nil)

// loginPending is the placeholder login ID a modem is claimed under while a login runs.
const loginPending = "pending-login"

// pendingID is the placeholder login ID a modem is claimed under while this flow runs.
func (ml *modemLogin) pendingID() networkid.UserLoginID {
	return networkid.UserLoginID(loginPending + ":" + string(ml.user.MXID))
}

// Start picks the modem when there is only one free; otherwise it asks.
func (ml *modemLogin) Start(ctx context.Context) (*bridgev2.LoginStep, error) {
	free := ml.freeModems()
	switch len(free) {
	case 0:
		if len(ml.conn.cfg.Modems) > 0 {
			return nil, errors.New("every modem in network.modems is already a logged-in line; add another modem to the config, or log a line out")
		}
		return ml.askDevice(), nil
	case 1:
		return ml.useModem(ctx, free[0])
	default:
		ids := make([]string, len(free))
		for i, m := range free {
			ids[i] = m.ID
		}
		return &bridgev2.LoginStep{
			Type:         bridgev2.LoginStepTypeUserInput,
			StepID:       stepSelectModem,
			Instructions: "Which modem is this line? (network.modems in the config)",
			UserInputParams: &bridgev2.LoginUserInputParams{Fields: []bridgev2.LoginInputDataField{{
				Type: bridgev2.LoginInputFieldTypeSelect, ID: "modem", Name: "Modem", Options: ids,
			}}},
		}, nil
	}
}

func (ml *modemLogin) askDevice() *bridgev2.LoginStep {
	return &bridgev2.LoginStep{
		Type:         bridgev2.LoginStepTypeUserInput,
		StepID:       stepSelectModem,
		Instructions: "No modem is configured in network.modems. Which serial device is the modem? (e.g. /dev/serial/by-id/usb-…-if02-port0, /dev/ttyUSB2, or tcp://host:port for ser2net)",
		UserInputParams: &bridgev2.LoginUserInputParams{Fields: []bridgev2.LoginInputDataField{{
			Type: bridgev2.LoginInputFieldTypeURL, ID: "device", Name: "Device path",
			Validate: func(s string) (string, error) {
				s = strings.TrimSpace(s)
				if !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "tcp://") {
					return "", errors.New("write an absolute device path (/dev/…) or tcp://host:port")
				}
				return s, nil
			},
		}}},
	}
}

func (ml *modemLogin) freeModems() []config.Modem {
	ml.conn.mu.Lock()
	defer ml.conn.mu.Unlock()
	var free []config.Modem
	for _, m := range ml.conn.cfg.Modems {
		if _, used := ml.conn.inUse[m.ID]; !used {
			free = append(free, m)
		}
	}
	return free
}

// SubmitUserInput takes the answer to the current step.
func (ml *modemLogin) SubmitUserInput(ctx context.Context, input map[string]string) (*bridgev2.LoginStep, error) {
	switch {
	case ml.line == nil && input["modem"] != "":
		for _, m := range ml.freeModems() {
			if m.ID == input["modem"] {
				return ml.useModem(ctx, m)
			}
		}
		return nil, fmt.Errorf("there is no free modem %q; pick one of the listed modems", input["modem"])
	case ml.line == nil && input["device"] != "":
		return ml.useModem(ctx, config.Modem{ID: input["device"], Device: input["device"], Baud: 115200})
	case ml.line != nil && input["pin"] != "":
		if err := ml.line.EnterPIN(ctx, input["pin"]); err != nil {
			ml.log.Warn("failed to unlock the SIM with the PIN given at login", zap.Error(err))
			st, stErr := ml.line.PINStatus(ctx)
			if stErr == nil && st == simNeedsPIN {
				// bridgev2 ends the login on an error, so ask again instead.
				return ml.pinStep("The SIM refused that PIN. Check it and try again; careful: after 3 wrong PINs the SIM locks and needs its PUK."), nil
			}
			ml.Cancel()
			return nil, fmt.Errorf("the SIM refused the PIN and is now %q: unlock it with its PUK in a phone first", st)
		}
		return ml.afterUnlock(ctx)
	case ml.line != nil && input["number"] != "":
		num, err := phone.Parse(input["number"], ml.conn.cfg.DefaultRegion)
		if err != nil {
			return nil, err
		}
		return ml.finish(ctx, num)
	}
	return nil, errors.New("missing input for this login step")
}

// useModem opens the modem and checks the SIM.
func (ml *modemLogin) useModem(ctx context.Context, m config.Modem) (*bridgev2.LoginStep, error) {
	if err := ml.conn.claim(m.ID, ml.pendingID()); err != nil {
		return nil, err
	}
	ml.claimed = m.ID
	ml.modem = m
	ml.hooks = &lineHooks{}
	ml.line = ml.conn.newLine(m, "", ml.hooks, ml.log.With(zap.String("line", m.ID)))
	if err := ml.line.Open(ctx); err != nil {
		ml.Cancel()
		return nil, fmt.Errorf("open modem %s: %w", m.Device, err)
	}
	st, err := ml.line.PINStatus(ctx)
	if err != nil {
		ml.Cancel()
		return nil, fmt.Errorf("ask the SIM whether it needs a PIN: %w", err)
	}
	switch st {
	case simReady:
		return ml.afterUnlock(ctx)
	case simNeedsPIN:
		if m.PIN != "" {
			if err := ml.line.EnterPIN(ctx, m.PIN); err != nil {
				ml.Cancel()
				return nil, fmt.Errorf("the SIM refused the PIN in network.modems (id %s): %w; fix the pin there, or remove it to be asked", m.ID, err)
			}
			return ml.afterUnlock(ctx)
		}
		return ml.pinStep("The SIM is locked. Enter its PIN (it is not stored; put it in network.modems[].pin to unlock the SIM after restarts)."), nil
	default:
		ml.Cancel()
		return nil, fmt.Errorf("the SIM is locked (%s): unlock it with its PUK in a phone first; bubbled does not try PINs blindly", st)
	}
}

// pinStep asks for the SIM PIN.
func (ml *modemLogin) pinStep(instructions string) *bridgev2.LoginStep {
	return &bridgev2.LoginStep{
		Type:         bridgev2.LoginStepTypeUserInput,
		StepID:       stepPIN,
		Instructions: instructions,
		UserInputParams: &bridgev2.LoginUserInputParams{Fields: []bridgev2.LoginInputDataField{{
			Type: bridgev2.LoginInputFieldTypePassword, ID: "pin", Name: "SIM PIN", Pattern: "^[0-9]{4,8}$",
		}}},
	}
}

// afterUnlock learns the line's own number: config, then AT+CNUM, else asks.
func (ml *modemLogin) afterUnlock(ctx context.Context) (*bridgev2.LoginStep, error) {
	if ml.modem.OwnNumber != "" {
		num, err := phone.Parse(ml.modem.OwnNumber, ml.conn.cfg.DefaultRegion)
		if err == nil {
			return ml.finish(ctx, num)
		}
	}
	if raw, err := ml.line.OwnNumber(ctx); err == nil && raw != "" {
		if num, err := phone.Parse(raw, ml.conn.cfg.DefaultRegion); err == nil {
			return ml.finish(ctx, num)
		}
	}
	return &bridgev2.LoginStep{
		Type:         bridgev2.LoginStepTypeUserInput,
		StepID:       stepNumber,
		Instructions: "The SIM does not know its own number. What is this line's phone number?",
		UserInputParams: &bridgev2.LoginUserInputParams{Fields: []bridgev2.LoginInputDataField{{
			Type: bridgev2.LoginInputFieldTypePhoneNumber, ID: "number", Name: "Phone number",
		}}},
	}, nil
}

// finish stores the login and hands the open line to its client.
func (ml *modemLogin) finish(ctx context.Context, number string) (*bridgev2.LoginStep, error) {
	meta := &LoginMetadata{Number: number}
	if ml.isConfigured() {
		meta.ModemID = ml.modem.ID
	} else {
		meta.Device = ml.modem.Device
	}
	line, hooks := ml.line, ml.hooks
	loginID := LoginIDForNumber(number)
	ml.conn.release(ml.claimed, ml.pendingID())
	ml.claimed = ""
	ul, err := ml.user.NewLogin(ctx, &database.UserLogin{
		ID:         loginID,
		RemoteName: phone.Format(number),
		Metadata:   meta,
	}, &bridgev2.NewLoginParams{
		DeleteOnConflict: true,
		LoadUserLogin: func(ctx context.Context, login *bridgev2.UserLogin) error {
			cl, err := ml.conn.newClient(login, line, hooks)
			if err != nil {
				return err
			}
			login.Client = cl
			return nil
		},
	})
	if err != nil {
		ml.Cancel()
		return nil, fmt.Errorf("save the line: %w", err)
	}
	ml.line = nil
	ml.conn.refreshLocalLines(ctx)
	ul.Client.Connect(ul.Log.WithContext(context.Background()))
	return &bridgev2.LoginStep{
		Type:         bridgev2.LoginStepTypeComplete,
		StepID:       stepComplete,
		Instructions: fmt.Sprintf("Logged in: SMS to %s now arrive here, each contact in its own room. Start a conversation with `start-chat <number>`.", phone.Format(number)),
		CompleteParams: &bridgev2.LoginCompleteParams{
			UserLoginID: ul.ID,
			UserLogin:   ul,
		},
	}, nil
}

func (ml *modemLogin) isConfigured() bool {
	for _, m := range ml.conn.cfg.Modems {
		if m.ID == ml.modem.ID {
			return true
		}
	}
	return false
}

// Cancel closes the modem if the flow opened it and did not hand it over.
func (ml *modemLogin) Cancel() {
	if ml.line != nil {
		_ = ml.line.Close()
		ml.line = nil
	}
	if ml.claimed != "" {
		ml.conn.release(ml.claimed, ml.pendingID())
		ml.claimed = ""
	}
}
