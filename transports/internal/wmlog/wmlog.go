// Package wmlog adapts slog loggers for the Watermill components the
// transports use.
package wmlog

import (
	"context"
	"errors"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
)

// Adapter returns l as a Watermill logger, or one that discards when l is
// nil. Watermill's Info messages are routine (subscriptions starting and
// stopping), so they are logged at slog's Debug; its errors stay errors,
// except those caused by a cancelled context: the transports cancel their
// components' contexts to close them, and what that interrupts (a poll, an
// ack) is part of a normal shutdown, logged at Debug.
func Adapter(l *slog.Logger) watermill.LoggerAdapter {
	if l == nil {
		return watermill.NopLogger{}
	}
	return adapter{watermill.NewSlogLoggerWithLevelMapping(l, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})}
}

type adapter struct{ watermill.LoggerAdapter }

func (a adapter) Error(msg string, err error, fields watermill.LogFields) {
	if errors.Is(err, context.Canceled) {
		a.Debug(msg, fields.Add(watermill.LogFields{"err": err}))
		return
	}
	a.LoggerAdapter.Error(msg, err, fields)
}

func (a adapter) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return adapter{a.LoggerAdapter.With(fields)}
}
