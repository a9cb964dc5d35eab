package sms

import (
	"time"

	"github.com/bubbled/bubbled/fallback"
)

// Defaults applied by NewLine to zero Config fields.
const (
	// DefaultBaud is the serial speed used when Config.Baud is 0.
	DefaultBaud = 115200
	// DefaultCommandTimeout bounds ordinary AT commands.
	DefaultCommandTimeout = 10 * time.Second
	// DefaultSendTimeout bounds one AT+CMGS part (modem manuals allow up
	// to 120 s, decided by the network).
	DefaultSendTimeout = 120 * time.Second
	// DefaultInboundLanes is how many conversations' inbound messages are
	// handed to the Handler at once when Config.InboundLanes is 0.
	DefaultInboundLanes = 8
)

// Config describes one modem line. Zero durations and Baud take the Default*
// values; MaxParts 0 means no limit on the number of parts of a message.
type Config struct {
	// ID names the line in the database and in message IDs; it must stay
	// the same across restarts (e.g. the login ID).
	ID string
	// Device is a serial device (prefer a stable /dev/serial/by-id/ path)
	// or tcp://host:port for a serial server such as ser2net.
	Device string
	// Baud is the serial speed (ignored for tcp://); default 115200.
	Baud int
	// PIN is entered once at Open when the SIM asks for it; never logged.
	PIN string
	// OwnNumber overrides what AT+CNUM says (many SIMs do not know it).
	OwnNumber string
	// CommandTimeout bounds each ordinary AT command; default 10 s.
	CommandTimeout time.Duration
	// SendTimeout bounds each AT+CMGS part; default 120 s (networks are slow).
	SendTimeout time.Duration
	// MaxParts limits the parts of one outbound message; 0 = no limit.
	MaxParts int
	// StatusReports asks the network for delivery reports (TP-SRR) and
	// routes them to the line (+CNMI <ds>=1).
	StatusReports bool
	// MMSBearer, when its APN is set, defines and activates the PDP
	// context of the MMS data path through the AT port after every (re)open
	// (bearer.go); zero leaves the data link to the operator.
	MMSBearer Bearer
	// ReassemblyTimeout is how long an incomplete concatenated message waits
	// for its missing parts before it is delivered with gaps marked "[…]";
	// default 24 h.
	ReassemblyTimeout time.Duration
	// OnStateChange, if set, is called on every state change with the
	// error that caused it (nil for normal transitions). It runs on the
	// Line's goroutines and must not block or call back into the Line.
	// StateRecovering is reported once per rung of the recovery ladder,
	// with a *RecoveryError naming the rung.
	OnStateChange func(State, error)

	// OnOutcome receives the outcomes of enqueued messages (see
	// OutcomeHandler); nil keeps them in the database for a later Line
	// that has one.
	OnOutcome OutcomeHandler
	// OnCall receives incoming calls (see CallHandler); nil keeps them in
	// the database for a later Line that has one. Calls are hung up either
	// way.
	OnCall CallHandler
	// MaxAttempts bounds the tries of a message refused with temporary
	// +CMS errors; default DefaultMaxAttempts.
	MaxAttempts int
	// RetryBase is the first retry delay after a temporary refusal,
	// doubled per try with ±20 % jitter; default DefaultRetryBase.
	RetryBase time.Duration
	// RetryMax caps the retry delay; default DefaultRetryMax.
	RetryMax time.Duration
	// LateReplyGrace is how long a timed-out AT+CMGS whose PDU reached the
	// modem may still be answered (and credited) before the message is
	// declared unknown; default DefaultLateReplyGrace.
	LateReplyGrace time.Duration
	// RatePerMinute, RatePerDay and RatePerMonth cap the SMS parts the
	// line sends per rolling minute, per calendar day and per calendar
	// month (in Location); 0 = no cap.
	RatePerMinute, RatePerDay, RatePerMonth int
	// UserRatePerDay caps the parts sent per calendar day by this line
	// and the lines UserLines names together (the lines of one person);
	// 0 = no cap. Like the line's own caps it counts the sent parts in the
	// database, so a restart does not reset it.
	UserRatePerDay int
	// UserLines returns the IDs of the other lines that share
	// UserRatePerDay with this one; nil means none. It is called on the
	// sender goroutine before each part and must not block.
	UserLines func() []string
	// Location is the time zone of the day and month caps; default
	// time.Local.
	Location *time.Location
	// WatchdogInterval is how often the watchdog checks the modem (AT,
	// AT+CNMI?); default DefaultWatchdogInterval, negative disables it.
	WatchdogInterval time.Duration
	// USSDTimeout bounds the wait for the network's answer to USSD;
	// default DefaultUSSDTimeout.
	USSDTimeout time.Duration
	// Clock is the time source of the outbox (retry times, pacing), the
	// watchdog, call times and message bookkeeping; nil means
	// fallback.SystemClock{}. Tests inject fallbacktest.Clock. Waits on the
	// modem's own timescale (reopening the port, pauses after a hiccup,
	// mailbox retries) always use the system clock: the modem and the
	// database do not follow a fake one.
	Clock fallback.Clock
	// InboundLanes is how many senders' messages the Line hands to the
	// Handler at once (default DefaultInboundLanes; 1 hands everything in
	// arrival order). One sender's messages are always handed in order,
	// one at a time, so the Handler is called concurrently only for
	// different senders.
	InboundLanes int
}

// withDefaults fills the zero fields of cfg.
func withDefaults(cfg Config) Config {
	durations := []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&cfg.CommandTimeout, DefaultCommandTimeout}, {&cfg.SendTimeout, DefaultSendTimeout},
		{&cfg.ReassemblyTimeout, 24 * time.Hour}, {&cfg.RetryBase, DefaultRetryBase},
		{&cfg.RetryMax, DefaultRetryMax}, {&cfg.LateReplyGrace, DefaultLateReplyGrace},
		{&cfg.USSDTimeout, DefaultUSSDTimeout},
	}
	for _, d := range durations {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if cfg.Baud <= 0 {
		cfg.Baud = DefaultBaud
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.WatchdogInterval == 0 {
		cfg.WatchdogInterval = DefaultWatchdogInterval
	}
	if cfg.InboundLanes <= 0 {
		cfg.InboundLanes = DefaultInboundLanes
	}
	if cfg.Clock == nil {
		cfg.Clock = fallback.SystemClock{}
	}
	return cfg
}
