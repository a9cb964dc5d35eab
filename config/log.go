package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/rs/zerolog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ZapLevel returns the zap level for l.Level; trace is zap's debug.
// Unknown levels give info (Load rejects them).
func (l Log) ZapLevel() zapcore.Level {
	switch strings.ToLower(l.Level) {
	case "trace", "debug":
		return zapcore.DebugLevel
	case "warn":
		return zapcore.WarnLevel
	case "error":
		return zapcore.ErrorLevel
	}
	return zapcore.InfoLevel
}

// ZerologLevel returns the minimum level of zerolog events (from mautrix)
// worth passing to zap: trace only when l.Level is trace.
func (l Log) ZerologLevel() zerolog.Level {
	switch strings.ToLower(l.Level) {
	case "trace":
		return zerolog.TraceLevel
	case "debug":
		return zerolog.DebugLevel
	case "warn":
		return zerolog.WarnLevel
	case "error":
		return zerolog.ErrorLevel
	}
	return zerolog.InfoLevel
}

// NewLogger builds the process logger from the log section: console
// (human-readable, coloured levels) or JSON lines on stderr, at the given
// level, ISO 8601 timestamps, no sampling. Errors get a stack trace only
// at error level and above in console format. Phone numbers in lines at
// info and above are masked ([MaskingCore]).
func NewLogger(l Log) (*zap.Logger, error) {
	var enc zapcore.EncoderConfig
	var encoding string
	switch strings.ToLower(l.Format) {
	case "json":
		enc = zap.NewProductionEncoderConfig()
		encoding = "json"
	case "console", "":
		enc = zap.NewDevelopmentEncoderConfig()
		enc.EncodeLevel = zapcore.CapitalColorLevelEncoder
		encoding = "console"
	default:
		return nil, fmt.Errorf("log.format %q is not console or json", l.Format)
	}
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	switch strings.ToLower(l.Level) {
	case "", "trace", "debug", "info", "warn", "error":
	default:
		return nil, fmt.Errorf("log.level %q is not one of %s", l.Level, strings.Join(logLevels, ", "))
	}
	zc := zap.Config{
		Level:             zap.NewAtomicLevelAt(l.ZapLevel()),
		Encoding:          encoding,
		EncoderConfig:     enc,
		OutputPaths:       []string{"stderr"},
		ErrorOutputPaths:  []string{"stderr"},
		DisableStacktrace: encoding == "json",
	}
	log, err := zc.Build(zap.WrapCore(MaskingCore))
	if err != nil {
		return nil, fmt.Errorf("build logger: %w", err)
	}
	return log, nil
}

// ZerologToZap returns a zerolog.Logger that forwards every event to z:
// the message as the zap message, the level mapped (trace to debug, fatal
// and panic to error with a zerolog_level field, since zerolog exits or
// panics itself), and every other field under its own name. Events below
// level are dropped before encoding. Use it for bridgev2.NewBridge and
// dbutil.ZeroLogger. Caller annotation is off for these events (it would
// point at the adapter). mautrix puts phone numbers in its fields
// (portal_id, portal_receiver, user_login, ghost user IDs, room names), so
// the events go through [MaskingCore] (once, if z already masks): at info
// and above every number shows only its last two digits. Safe for
// concurrent use, as z is.
func ZerologToZap(z *zap.Logger, level zerolog.Level) zerolog.Logger {
	z = z.WithOptions(zap.WithCaller(false), zap.WrapCore(MaskingCore))
	return zerolog.New(zapWriter{z: z}).Level(level)
}

// zapWriter is the zerolog.LevelWriter behind ZerologToZap.
type zapWriter struct{ z *zap.Logger }

var _ zerolog.LevelWriter = zapWriter{}

func (w zapWriter) Write(p []byte) (int, error) {
	return w.WriteLevel(zerolog.NoLevel, p)
}

func (w zapWriter) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	zl, extra := mapLevel(level)
	ce := w.z.Check(zl, "")
	if ce == nil {
		return len(p), nil
	}
	msg, fields := parseZerologLine(p)
	if extra != "" {
		fields = append(fields, zap.String("zerolog_level", extra))
	}
	ce.Message = msg
	ce.Write(fields...)
	return len(p), nil
}

func mapLevel(l zerolog.Level) (zapcore.Level, string) {
	switch l {
	case zerolog.TraceLevel, zerolog.DebugLevel:
		return zapcore.DebugLevel, ""
	case zerolog.WarnLevel:
		return zapcore.WarnLevel, ""
	case zerolog.ErrorLevel:
		return zapcore.ErrorLevel, ""
	case zerolog.FatalLevel:
		return zapcore.ErrorLevel, "fatal"
	case zerolog.PanicLevel:
		return zapcore.ErrorLevel, "panic"
	}
	return zapcore.InfoLevel, ""
}

// parseZerologLine splits one zerolog JSON line into its message and the
// remaining fields, in their original order. level and time are dropped
// (zap has its own). A line that is not a JSON object is logged verbatim.
func parseZerologLine(p []byte) (string, []zap.Field) {
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return strings.TrimRight(string(p), "\n"), nil
	}
	var msg string
	var fields []zap.Field
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			break
		}
		key, _ := kt.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			break
		}
		switch key {
		case zerolog.MessageFieldName:
			if err := json.Unmarshal(raw, &msg); err != nil {
				msg = string(raw)
			}
			continue
		case zerolog.LevelFieldName, zerolog.TimestampFieldName:
			continue
		}
		fields = append(fields, jsonField(key, raw))
	}
	return msg, fields
}

func jsonField(key string, raw json.RawMessage) zap.Field {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return zap.String(key, string(raw))
	}
	switch x := v.(type) {
	case string:
		return zap.String(key, x)
	case bool:
		return zap.Bool(key, x)
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return zap.Int64(key, i)
		}
		if f, err := x.Float64(); err == nil {
			return zap.Float64(key, f)
		}
		return zap.String(key, x.String())
	case nil:
		return zap.Any(key, nil)
	}
	return zap.Any(key, v)
}
