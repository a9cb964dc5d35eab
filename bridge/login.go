package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/id"

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
	stepCheck       = "com.github.bubbled.modem.check"
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
	check   *sms.PendingCheck // the number check Wait waits for
}

var (
	_ bridgev2.LoginProcessUserInput      = (*modemLogin)(nil)
	_ bridgev2.LoginProcessDisplayAndWait = (*modemLogin)(nil)
)

// How a line's number was proven (LoginMetadata.Proof).
const (
	proofConfig = "config"
	proofSMS    = "sms"
	proofAdmin  = "admin"
)

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
		if !ml.user.Permissions.Admin {
			return nil, errNoModemForUser
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
		if !ml.user.Permissions.Admin {
			return nil, errNoModemForUser
		}
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
		return ml.checkNumber(ctx, num)
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
	ml.hooks = &lineHooks{owner: ml.user.MXID}
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
			return ml.finish(ctx, num, proofConfig)
		}
	}
	ask := "The SIM does not know its own number. What is this line's phone number? (It is checked by an SMS the line texts to it.)"
	if raw, err := ml.line.OwnNumber(ctx); err == nil && raw != "" {
		if num, err := phone.Parse(raw, ml.conn.cfg.DefaultRegion); err == nil {
			if _, err := ml.conn.mayOwnNumber(ctx, num, ml.user.MXID); err == nil {
				return ml.checkNumber(ctx, num)
			}
			ml.log.Warn("refused the number the SIM reports: another user's line has it", zap.String("number", phone.Mask(num)))
			ask = fmt.Sprintf("The SIM says its number is %s, but that is another user's line on this bridge, and it stays theirs. What is this SIM's own number? (It is checked by an SMS the line texts to it.)", phone.Format(num))
		}
	}
	return &bridgev2.LoginStep{
		Type:         bridgev2.LoginStepTypeUserInput,
		StepID:       stepNumber,
		Instructions: ask,
		UserInputParams: &bridgev2.LoginUserInputParams{Fields: []bridgev2.LoginInputDataField{{
			Type: bridgev2.LoginInputFieldTypePhoneNumber, ID: "number", Name: "Phone number",
		}}},
	}, nil
}

// checkNumber proves a number the SIM reported or the user typed before the
// line takes it: the line texts itself a code (sms.NumberCheck), and Wait
// waits for it to come back. A number an admin gave this user needs no check.
func (ml *modemLogin) checkNumber(ctx context.Context, number string) (*bridgev2.LoginStep, error) {
	proof, err := ml.conn.mayOwnNumber(ctx, number, ml.user.MXID)
	if err != nil {
		ml.Cancel()
		return nil, err
	}
	if proof != "" {
		return ml.finish(ctx, number, proof)
	}
	check, err := sms.NewNumberCheck(number)
	if err == nil {
		ml.check = check.Start()
		ml.hooks.mu.Lock()
		ml.hooks.check = ml.check
		ml.hooks.mu.Unlock()
		if !ml.line.Receiving() {
			err = ml.line.StartReceiving(ctx)
		}
	}
	if err == nil {
		err = ml.line.Enqueue(ctx, check.Message())
	}
	if err != nil {
		ml.Cancel()
		return nil, fmt.Errorf("check the line's number: %w", err)
	}
	return &bridgev2.LoginStep{
		Type:   bridgev2.LoginStepTypeDisplayAndWait,
		StepID: stepCheck,
		Instructions: fmt.Sprintf("Checking that this SIM's number is %s: the line texts a code to that number and waits up to %s for it to come back (it is not shown anywhere). Only a SIM with that number gets it.",
			phone.Format(number), ml.conn.cfg.SMS.NumberCheckTimeout),
		DisplayAndWaitParams: &bridgev2.LoginDisplayAndWaitParams{Type: bridgev2.LoginDisplayTypeNothing},
	}, nil
}

// Wait waits for the number check's SMS to come back, then stores the line.
// A restart meanwhile ends the flow: the user logs in again (a new code).
func (ml *modemLogin) Wait(ctx context.Context) (*bridgev2.LoginStep, error) {
	if ml.check == nil {
		return nil, errors.New("no number check is running; log in again")
	}
	timeout, number := ml.conn.cfg.SMS.NumberCheckTimeout, ml.check.Number
	var err error
	select {
	case err = <-ml.check.Done():
	case <-time.After(timeout):
		err = fmt.Errorf("the check SMS to %s did not come back within %s, so this SIM's number is not %s (or the network is slow)", phone.Format(number), timeout, phone.Format(number))
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		ml.Cancel()
		return nil, fmt.Errorf("%w; log in again and give the SIM's own number, or ask the bridge admin to set own_number for this modem in network.modems", err)
	}
	ml.log.Info("proved the line's number by SMS", zap.String("number", phone.Mask(number)))
	return ml.finish(ctx, number, proofSMS)
}

// errNoModemForUser refuses device paths typed by users who are not admins:
// a modem given in chat (a tcp:// address above all) is not trusted.
var errNoModemForUser = errors.New("no modem is configured in network.modems, and only a bridge admin may name a device path or tcp:// modem in chat; ask the admin to add your modem to network.modems")

// mayOwnNumber refuses a number another user's line has, or that an admin
// gave to someone else; proof is proofAdmin when an admin gave it to mxid.
func (c *Connector) mayOwnNumber(ctx context.Context, number string, mxid id.UserID) (proof string, err error) {
	assign := "ask the bridge admin to give it to you with `set-line-owner " + number + " " + string(mxid) + "`"
	if owner := id.UserID(c.br.DB.KV.Get(ctx, lineOwnerKey(number))); owner != "" {
		if owner != mxid {
			return "", fmt.Errorf("%s was given to another user of this bridge by an admin; if this SIM really has that number, %s", phone.Format(number), assign)
		}
		proof = proofAdmin
	}
	other, err := c.br.GetExistingUserLoginByID(ctx, LoginIDForNumber(number))
	if err != nil {
		return "", fmt.Errorf("look up the line of %s: %w", phone.Format(number), err)
	}
	if other != nil && other.UserMXID != mxid {
		return "", fmt.Errorf("%s is already the line of another user of this bridge, and stays theirs. If this SIM really has that number, %s; otherwise log in again and give this SIM's own number", phone.Format(number), assign)
	}
	return proof, nil
}

// lineOwnerKey is the bridge KV key of the user an admin gave a number to.
func lineOwnerKey(number string) database.Key {
	return database.Key("com.github.bubbled.line_owner." + number)
}

// finish stores the login and hands the open line to its client.
func (ml *modemLogin) finish(ctx context.Context, number, proof string) (*bridgev2.LoginStep, error) {
	if _, err := ml.conn.mayOwnNumber(ctx, number, ml.user.MXID); err != nil {
		ml.Cancel()
		return nil, err
	}
	meta := &LoginMetadata{Number: number, Proof: proof}
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
		// Never: a line must not take over another user's login.
		DeleteOnConflict: false,
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
	ml.check = nil
	if ml.claimed != "" {
		ml.conn.release(ml.claimed, ml.pendingID())
		ml.claimed = ""
	}
}
