package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// fullNumber matches the contact's number in any of the forms mautrix and
// bubbled print it: E.164, digits in an ID, formatted for people.
var fullNumber = regexp.MustCompile(`5[\s\-()]*5[\s\-()]*5[\s\-()]*7[\s\-()]*6[\s\-()]*5[\s\-()]*4[\s\-()]*3[\s\-()]*2[\s\-()]*1`)

type stringerNumber struct{}

func (stringerNumber) String() string { return "line +15557654321" }

type objectNumber struct{}

func (objectNumber) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("receiver", "+15557654321")
	enc.AddInt("parts", 3)
	return nil
}

// rendered is an entry as one string: message and every field.
func rendered(e observer.LoggedEntry) string {
	return fmt.Sprintf("%s %v", e.Message, e.ContextMap())
}

// TestZerologToZapMasksNumbers: mautrix's events at info and above show
// numbers only masked, whatever field or nesting carries them; debug keeps
// them whole.
func TestZerologToZapMasksNumbers(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	zl := ZerologToZap(zap.New(core), zerolog.DebugLevel).With().Str("portal_id", "+15557654321|sim0").Logger()
	emit := func(ev *zerolog.Event) {
		ev.Str("portal_receiver", "15557654321").
			Str("user_id", "@sms_15557654321:localhost").
			Strs("ghosts", []string{"@sms_15557654321:localhost", "@smsbot:localhost"}).
			Dict("room", zerolog.Dict().Str("name", "+1 555-765-4321").Int("members", 2)).
			Err(errors.New("send to +15557654321: refused")).
			Msg("updated portal info of +1 555-765-4321")
	}
	emit(zl.Info())
	emit(zl.Warn())
	emit(zl.Debug())
	all := logs.All()
	if len(all) != 3 {
		t.Fatalf("got %d entries, want 3", len(all))
	}
	for _, e := range all[:2] {
		s := rendered(e)
		if fullNumber.MatchString(s) {
			t.Errorf("%s line shows a full number: %s", e.Level, s)
		}
		for _, want := range []string{"+*********21|sim0", "@sms_*********21:localhost", "+* ***-***-**21", "@smsbot:localhost", "members:2"} {
			if !strings.Contains(s, want) {
				t.Errorf("%s line lacks %q: %s", e.Level, want, s)
			}
		}
	}
	if !fullNumber.MatchString(rendered(all[2])) {
		t.Errorf("debug line was masked: %s", rendered(all[2]))
	}
}

// TestMaskingCoreZapFields: bubbled's own zap lines are masked the same
// way, including context from With, errors, Stringers, objects and
// reflected values, and only at info and above.
func TestMaskingCoreZapFields(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(MaskingCore(core)).With(zap.String("line", "+15557654321"))
	if MaskingCore(log.Core()) != log.Core() {
		t.Error("MaskingCore wrapped an already masking core again")
	}
	fields := []zap.Field{
		zap.Error(fmt.Errorf("send: %w", errors.New("to 15557654321"))),
		zap.Stringer("who", stringerNumber{}),
		zap.Object("obj", objectNumber{}),
		zap.Inline(objectNumber{}),
		zap.Any("list", []string{"a", "+15557654321"}),
		zap.Any("struct", struct{ To string }{To: "+15557654321"}),
		zap.ByteString("raw", []byte("+15557654321")),
		zap.Int("count", 1234567890),
		zap.Strings("plain", []string{"x"}),
	}
	log.Info("sent to +15557654321", fields...)
	log.Error("failed for +15557654321", fields...)
	log.Debug("debug +15557654321", fields...)
	all := logs.All()
	for _, e := range all[:2] {
		if s := rendered(e); fullNumber.MatchString(s) {
			t.Errorf("%s line shows a full number: %s", e.Level, s)
		}
		if e.ContextMap()["count"] != int64(1234567890) {
			t.Errorf("numeric field changed: %v", e.ContextMap()["count"])
		}
	}
	if s := rendered(all[2]); !fullNumber.MatchString(s) || !strings.Contains(s, "line:+15557654321") {
		t.Errorf("debug line was masked: %s", s)
	}
}

// BenchmarkMaskingCore measures an info line with a number through the
// masking core, against the same line through the bare core: the cost
// bubbled pays per log line.
func BenchmarkMaskingCore(b *testing.B) {
	for _, bc := range []struct {
		name string
		wrap func(zapcore.Core) zapcore.Core
	}{
		{"plain", func(c zapcore.Core) zapcore.Core { return c }},
		{"masked", MaskingCore},
	} {
		b.Run(bc.name, func(b *testing.B) {
			core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(discard{}), zapcore.InfoLevel)
			log := zap.New(bc.wrap(core)).With(zap.String("portal_id", "+15557654321|sim0"))
			b.ReportAllocs()
			for b.Loop() {
				log.Info("sent SMS part", zap.String("to", "+15557654321"), zap.Int("part", 1), zap.Error(errors.New("timeout")))
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
