package middleware

import (
	"context"
	"log/slog"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
)

// Log attribute keys used by every middleware of this package and by
// LogAttrs. Payloads and metadata values other than these are never logged.
const (
	AttrEventID       = "event_id"
	AttrEventName     = "event_name"
	AttrCorrelationID = "correlation_id"
	AttrHandler       = "handler"
)

type logInfoKey struct{}

type logInfo struct {
	base                                       *slog.Logger
	eventID, eventName, correlationID, handler string

	once   sync.Once
	logger *slog.Logger
}

func withLogInfo(ctx context.Context, li *logInfo) context.Context {
	return context.WithValue(ctx, logInfoKey{}, li)
}

func (li *logInfo) attrs() []slog.Attr {
	attrs := make([]slog.Attr, 0, 4)
	add := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	add(AttrEventID, li.eventID)
	add(AttrEventName, li.eventName)
	add(AttrCorrelationID, li.correlationID)
	add(AttrHandler, li.handler)
	return attrs
}

// LoggerFromContext returns the logger of the message being handled: the
// CorrelationConfig.Logger with event_id, event_name, correlation_id and
// handler attributes. Outside Correlation it returns slog.Default().
func LoggerFromContext(ctx context.Context) *slog.Logger {
	li, ok := ctx.Value(logInfoKey{}).(*logInfo)
	if !ok {
		return slog.Default()
	}
	li.once.Do(func() {
		args := make([]any, 0, 4)
		for _, a := range li.attrs() {
			args = append(args, a)
		}
		li.logger = li.base.With(args...)
	})
	return li.logger
}

// LogAttrs returns the log attributes of the message being handled
// (event_id, event_name, correlation_id, handler; empty ones left out), or
// nil outside Correlation.
func LogAttrs(ctx context.Context) []slog.Attr {
	li, ok := ctx.Value(logInfoKey{}).(*logInfo)
	if !ok {
		return nil
	}
	return li.attrs()
}

// NewLogHandler wraps next so that records logged with a context from inside
// Correlation (logger.InfoContext(ctx, …)) carry the message's LogAttrs.
// Use it to make the application's own logger correlation-aware.
func NewLogHandler(next slog.Handler) slog.Handler { return logHandler{next} }

type logHandler struct{ next slog.Handler }

func (h logHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if attrs := LogAttrs(ctx); len(attrs) > 0 {
		r = r.Clone()
		r.AddAttrs(attrs...)
	}
	return h.next.Handle(ctx, r)
}

func (h logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{h.next.WithAttrs(attrs)}
}

func (h logHandler) WithGroup(name string) slog.Handler { return logHandler{h.next.WithGroup(name)} }

// attrsOf returns the attributes the middlewares log for msg: those that
// Correlation put in its context, else what the metadata says.
func attrsOf(msg *message.Message) []slog.Attr {
	ctx := msg.Context()
	if li, ok := ctx.Value(logInfoKey{}).(*logInfo); ok {
		return li.attrs()
	}
	id := msg.Metadata.Get(events.KeyEventID)
	if id == "" {
		id = msg.UUID
	}
	li := logInfo{
		eventID:       id,
		eventName:     msg.Metadata.Get(events.KeyName),
		correlationID: msg.Metadata.Get(events.KeyCorrelationID),
		handler:       message.HandlerNameFromCtx(ctx),
	}
	return li.attrs()
}
