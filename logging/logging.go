// Package logging bridges eventkit's *slog.Logger configs and Watermill's
// watermill.LoggerAdapter, so an application that already has one kind of
// logger can hand it to both worlds.
//
//	cfg := forwarder.OutboxConfig{Logger: logging.FromWatermill(wmLogger), …}
//	router, _ := message.NewRouter(message.RouterConfig{}, logging.ToWatermill(slogLogger))
//
// Attribute keys and values pass through unchanged; eventkit never logs
// payloads or passwords, whichever side writes the line.
//
// Where this package sits among the others, and the path of an event through
// them: docs/architecture.md in the repository.
package logging

import (
	"context"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
)

// ToWatermill returns a Watermill logger writing to l (watermill.NewSlogLogger).
// Watermill's Trace level maps to slog.LevelDebug-4.
func ToWatermill(l *slog.Logger) watermill.LoggerAdapter {
	if l == nil {
		return watermill.NopLogger{}
	}
	return watermill.NewSlogLogger(l)
}

// FromWatermill returns a *slog.Logger writing to w. Levels map to
// Watermill's: Error and above to Error (with the first attribute holding an
// error value as its err, or nil), Warn and Info to Info (Warn records get
// level=WARN), Debug to Debug, below Debug to Trace. Groups become key
// prefixes ("group.key"). A nil w discards.
func FromWatermill(w watermill.LoggerAdapter) *slog.Logger {
	if w == nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(&handler{w: w})
}

type handler struct {
	w      watermill.LoggerAdapter
	prefix string // group prefix, "" or "a.b."
}

func (h *handler) Enabled(context.Context, slog.Level) bool { return true }

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	fields := watermill.LogFields{}
	var err error
	r.Attrs(func(a slog.Attr) bool {
		if e, ok := a.Value.Any().(error); ok && err == nil && r.Level >= slog.LevelError {
			err = e
			return true
		}
		addAttr(fields, h.prefix, a)
		return true
	})
	switch {
	case r.Level >= slog.LevelError:
		h.w.Error(r.Message, err, fields)
	case r.Level >= slog.LevelWarn:
		fields["level"] = "WARN"
		h.w.Info(r.Message, fields)
	case r.Level >= slog.LevelInfo:
		h.w.Info(r.Message, fields)
	case r.Level >= slog.LevelDebug:
		h.w.Debug(r.Message, fields)
	default:
		h.w.Trace(r.Message, fields)
	}
	return nil
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	fields := watermill.LogFields{}
	for _, a := range attrs {
		addAttr(fields, h.prefix, a)
	}
	return &handler{w: h.w.With(fields), prefix: h.prefix}
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &handler{w: h.w, prefix: h.prefix + name + "."}
}

func addAttr(fields watermill.LogFields, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			addAttr(fields, p, g)
		}
		return
	}
	v := a.Value.Any()
	if e, ok := v.(error); ok {
		v = e.Error()
	}
	fields[prefix+a.Key] = v
}
