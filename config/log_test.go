package config

import (
	"errors"
	"testing"

	"github.com/rs/zerolog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestZerologToZap(t *testing.T) {
	cases := []struct {
		name     string
		zapLevel zapcore.Level
		zlLevel  zerolog.Level
		log      func(l zerolog.Logger)
		// want is nil when the event must be dropped.
		want *observer.LoggedEntry
	}{
		{
			name: "info with string field", zapLevel: zapcore.DebugLevel, zlLevel: zerolog.DebugLevel,
			log: func(l zerolog.Logger) { l.Info().Str("room_id", "!x").Msg("hi") },
			want: &observer.LoggedEntry{Entry: zapcore.Entry{Level: zapcore.InfoLevel, Message: "hi"},
				Context: []zapcore.Field{zap.String("room_id", "!x")}},
		},
		{
			name: "debug filtered by zap level", zapLevel: zapcore.InfoLevel, zlLevel: zerolog.TraceLevel,
			log: func(l zerolog.Logger) { l.Debug().Msg("noise") },
		},
		{
			name: "debug filtered by zerolog level", zapLevel: zapcore.DebugLevel, zlLevel: zerolog.InfoLevel,
			log: func(l zerolog.Logger) { l.Debug().Msg("noise") },
		},
		{
			name: "trace maps to debug", zapLevel: zapcore.DebugLevel, zlLevel: zerolog.TraceLevel,
			log: func(l zerolog.Logger) { l.Trace().Int("n", 3).Msg("tick") },
			want: &observer.LoggedEntry{Entry: zapcore.Entry{Level: zapcore.DebugLevel, Message: "tick"},
				Context: []zapcore.Field{zap.Int64("n", 3)}},
		},
		{
			name: "error field and types in order", zapLevel: zapcore.DebugLevel, zlLevel: zerolog.DebugLevel,
			log: func(l zerolog.Logger) {
				l.Error().Err(errors.New("boom")).Bool("ok", false).Float64("ratio", 0.5).
					Strs("ids", []string{"a", "b"}).Dict("sub", zerolog.Dict().Str("k", "v")).Msg("failed to send")
			},
			want: &observer.LoggedEntry{Entry: zapcore.Entry{Level: zapcore.ErrorLevel, Message: "failed to send"},
				Context: []zapcore.Field{zap.String("error", "boom"), zap.Bool("ok", false), zap.Float64("ratio", 0.5),
					zap.Any("ids", []any{"a", "b"}), zap.Any("sub", map[string]any{"k": "v"})}},
		},
		{
			name: "fatal becomes error without exiting", zapLevel: zapcore.DebugLevel, zlLevel: zerolog.DebugLevel,
			log: func(l zerolog.Logger) { l.WithLevel(zerolog.FatalLevel).Msg("homeserver outdated") },
			want: &observer.LoggedEntry{Entry: zapcore.Entry{Level: zapcore.ErrorLevel, Message: "homeserver outdated"},
				Context: []zapcore.Field{zap.String("zerolog_level", "fatal")}},
		},
		{
			name: "context fields and warn", zapLevel: zapcore.DebugLevel, zlLevel: zerolog.DebugLevel,
			log: func(l zerolog.Logger) {
				sub := l.With().Str("component", "matrix").Logger()
				sub.Warn().Msg("retrying")
			},
			want: &observer.LoggedEntry{Entry: zapcore.Entry{Level: zapcore.WarnLevel, Message: "retrying"},
				Context: []zapcore.Field{zap.String("component", "matrix")}},
		},
		{
			name: "timestamp dropped", zapLevel: zapcore.DebugLevel, zlLevel: zerolog.DebugLevel,
			log: func(l zerolog.Logger) {
				sub := l.With().Timestamp().Logger()
				sub.Info().Msg("started")
			},
			want: &observer.LoggedEntry{Entry: zapcore.Entry{Level: zapcore.InfoLevel, Message: "started"},
				Context: []zapcore.Field{}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(tc.zapLevel)
			tc.log(ZerologToZap(zap.New(core), tc.zlLevel))
			entries := logs.AllUntimed()
			if tc.want == nil {
				if len(entries) != 0 {
					t.Fatalf("got %d entries, want none: %+v", len(entries), entries)
				}
				return
			}
			if len(entries) != 1 {
				t.Fatalf("got %d entries, want 1: %+v", len(entries), entries)
			}
			got := entries[0]
			if got.Level != tc.want.Level || got.Message != tc.want.Message {
				t.Errorf("entry = %v %q, want %v %q", got.Level, got.Message, tc.want.Level, tc.want.Message)
			}
			gotMap, wantMap := got.ContextMap(), (&observer.LoggedEntry{Context: tc.want.Context}).ContextMap()
			if len(gotMap) != len(wantMap) {
				t.Errorf("fields = %v, want %v", gotMap, wantMap)
			}
			for k, w := range wantMap {
				if g, ok := gotMap[k]; !ok || !equalish(g, w) {
					t.Errorf("field %s = %#v, want %#v", k, g, w)
				}
			}
			for i, f := range tc.want.Context {
				if i < len(got.Context) && got.Context[i].Key != f.Key {
					t.Errorf("field %d is %q, want %q (order kept)", i, got.Context[i].Key, f.Key)
				}
			}
		})
	}
}

func equalish(a, b any) bool {
	switch x := a.(type) {
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalish(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k := range x {
			if !equalish(x[k], y[k]) {
				return false
			}
		}
		return true
	}
	return a == b
}

func TestZerologToZapNonJSON(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := ZerologToZap(zap.New(core), zerolog.DebugLevel)
	if _, err := l.Write([]byte("plain text line\n")); err != nil {
		t.Fatal(err)
	}
	entries := logs.AllUntimed()
	if len(entries) != 1 || entries[0].Message != "plain text line" || entries[0].Level != zapcore.InfoLevel {
		t.Fatalf("entries = %+v", entries)
	}
}

func TestNewLogger(t *testing.T) {
	cases := []struct {
		name    string
		log     Log
		enabled zapcore.Level
		off     zapcore.Level
		wantErr bool
	}{
		{name: "console info", log: Log{Level: "info", Format: "console"}, enabled: zapcore.InfoLevel, off: zapcore.DebugLevel},
		{name: "json debug", log: Log{Level: "debug", Format: "json"}, enabled: zapcore.DebugLevel, off: zapcore.DebugLevel - 1},
		{name: "trace is debug", log: Log{Level: "trace", Format: "json"}, enabled: zapcore.DebugLevel, off: zapcore.DebugLevel - 1},
		{name: "warn", log: Log{Level: "WARN", Format: "console"}, enabled: zapcore.WarnLevel, off: zapcore.InfoLevel},
		{name: "bad format", log: Log{Level: "info", Format: "xml"}, wantErr: true},
		{name: "bad level", log: Log{Level: "loud", Format: "json"}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, err := NewLogger(tc.log)
			if tc.wantErr {
				if err == nil {
					t.Fatal("NewLogger succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !l.Core().Enabled(tc.enabled) || l.Core().Enabled(tc.off) {
				t.Errorf("level: %v enabled=%v, %v enabled=%v", tc.enabled, l.Core().Enabled(tc.enabled), tc.off, l.Core().Enabled(tc.off))
			}
		})
	}
}

func TestLogLevels(t *testing.T) {
	cases := []struct {
		level string
		zap   zapcore.Level
		zl    zerolog.Level
	}{
		{"trace", zapcore.DebugLevel, zerolog.TraceLevel},
		{"debug", zapcore.DebugLevel, zerolog.DebugLevel},
		{"info", zapcore.InfoLevel, zerolog.InfoLevel},
		{"warn", zapcore.WarnLevel, zerolog.WarnLevel},
		{"error", zapcore.ErrorLevel, zerolog.ErrorLevel},
	}
	for _, tc := range cases {
		t.Run(tc.level, func(t *testing.T) {
			l := Log{Level: tc.level}
			if l.ZapLevel() != tc.zap || l.ZerologLevel() != tc.zl {
				t.Errorf("got %v/%v, want %v/%v", l.ZapLevel(), l.ZerologLevel(), tc.zap, tc.zl)
			}
		})
	}
}
