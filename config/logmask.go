package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/bubbled/bubbled/connectors/phone"
)

// MaskingCore wraps core so that every entry at info level and above has
// the phone numbers in its message and fields masked by phone.MaskText:
// bubbled's own lines and mautrix's (portal_id, portal_receiver, user_login,
// ghost user IDs, room names, errors …) alike, whoever forgot phone.Mask.
// Debug lines keep full numbers for troubleshooting. Fields given to With
// are kept as they are and masked per entry, so a logger's context follows
// the level of each line. Strings, byte strings, errors, Stringers,
// reflected values (maps, slices, structs through JSON) and object/array
// marshalers are masked; numeric fields are not. Safe for concurrent use
// as core is.
func MaskingCore(core zapcore.Core) zapcore.Core {
	if _, ok := core.(*maskCore); ok {
		return core
	}
	return &maskCore{inner: core}
}

// maskCore is the core of MaskingCore. inner has no context fields: they
// are in fields, so that they are masked per entry.
type maskCore struct {
	inner  zapcore.Core
	fields []zapcore.Field
}

func (c *maskCore) Enabled(l zapcore.Level) bool { return c.inner.Enabled(l) }

func (c *maskCore) With(fields []zapcore.Field) zapcore.Core {
	all := make([]zapcore.Field, 0, len(c.fields)+len(fields))
	return &maskCore{inner: c.inner, fields: append(append(all, c.fields...), fields...)}
}

func (c *maskCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *maskCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	all := fields
	if len(c.fields) > 0 {
		all = append(c.fields[:len(c.fields):len(c.fields)], fields...)
	}
	if e.Level >= zapcore.InfoLevel {
		e.Message = phone.MaskText(e.Message)
		all = maskFields(all)
	}
	return c.inner.Write(e, all)
}

func (c *maskCore) Sync() error { return c.inner.Sync() }

// maskFields returns fields with the numbers masked; the input is not
// changed (it may be the caller's or a logger's context).
func maskFields(fields []zapcore.Field) []zapcore.Field {
	out := make([]zapcore.Field, 0, len(fields))
	for _, f := range fields {
		out = append(out, maskField(f)...)
	}
	return out
}

func maskField(f zapcore.Field) []zapcore.Field {
	switch f.Type {
	case zapcore.StringType:
		f.String = phone.MaskText(f.String)
	case zapcore.ByteStringType:
		if b, ok := f.Interface.([]byte); ok {
			f.Interface = []byte(phone.MaskText(string(b)))
		}
	case zapcore.ErrorType, zapcore.StringerType:
		return []zapcore.Field{zap.String(f.Key, phone.MaskText(safeString(f.Interface)))}
	case zapcore.ReflectType:
		f.Interface = maskValue(f.Interface)
	case zapcore.ObjectMarshalerType, zapcore.ArrayMarshalerType:
		enc := zapcore.NewMapObjectEncoder()
		f.AddTo(enc)
		return []zapcore.Field{zap.Any(f.Key, maskValue(enc.Fields[f.Key]))}
	case zapcore.InlineMarshalerType:
		enc := zapcore.NewMapObjectEncoder()
		f.AddTo(enc)
		out := make([]zapcore.Field, 0, len(enc.Fields))
		for k, v := range enc.Fields {
			out = append(out, zap.Any(k, maskValue(v)))
		}
		return out
	}
	return []zapcore.Field{f}
}

// maskValue masks the strings in v: the shapes the zerolog adapter and
// MapObjectEncoder produce are walked, other values go through JSON. v
// itself is returned when nothing needed masking.
func maskValue(v any) any {
	m, _ := maskValueChanged(v)
	return m
}

func maskValueChanged(v any) (any, bool) {
	switch x := v.(type) {
	case nil, bool, int, int64, uint64, float64, json.Number, time.Time, time.Duration:
		return v, false
	case string:
		m := phone.MaskText(x)
		return m, m != x
	case []any:
		var out []any
		for i, e := range x {
			m, changed := maskValueChanged(e)
			if changed && out == nil {
				out = append(make([]any, 0, len(x)), x[:i]...)
			}
			if out != nil {
				out = append(out, m)
			}
		}
		if out == nil {
			return v, false
		}
		return out, true
	case map[string]any:
		var out map[string]any
		for k, e := range x {
			m, changed := maskValueChanged(e)
			if !changed {
				continue
			}
			if out == nil {
				out = maps.Clone(x)
			}
			out[k] = m
		}
		if out == nil {
			return v, false
		}
		return out, true
	}
	raw, err := json.Marshal(v)
	if err != nil {
		s := fmt.Sprintf("%+v", v)
		m := phone.MaskText(s)
		return m, m != s
	}
	if masked := phone.MaskText(string(raw)); masked != string(raw) {
		return json.RawMessage(masked), true
	}
	return v, false
}

// safeString renders an error or Stringer, surviving a nil receiver.
func safeString(v any) (s string) {
	defer func() {
		if r := recover(); r != nil {
			s = fmt.Sprintf("<panic rendering %T: %v>", v, r)
		}
	}()
	switch x := v.(type) {
	case error:
		return x.Error()
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}
