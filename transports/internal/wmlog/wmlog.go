// Package wmlog adapts slog loggers for the Watermill components the
// transports use.
package wmlog

import (
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
)

// Adapter returns l as a Watermill logger, or one that discards when l is
// nil. Watermill's Info messages are routine (subscriptions starting and
// stopping), so they are logged at slog's Debug; its errors stay errors.
func Adapter(l *slog.Logger) watermill.LoggerAdapter {
	if l == nil {
		return watermill.NopLogger{}
	}
	return watermill.NewSlogLoggerWithLevelMapping(l, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
}
