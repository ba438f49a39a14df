package middleware

import (
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
)

// CorrelationConfig configures Correlation. The zero value is the default.
type CorrelationConfig struct {
	// Logger is the logger handlers get from LoggerFromContext, with the
	// message's attributes added. Defaults to slog.Default().
	Logger *slog.Logger
}

// Correlation carries the envelope of the incoming message through the
// handler. See NewCorrelation.
type Correlation struct {
	log *slog.Logger
}

// NewCorrelation returns the Correlation middleware. For each message it:
//
//   - reads the envelope (events.EnvelopeFromMessage) and puts it in the
//     message context with events.ContextWithEnvelope, so
//     events.EnvelopeFromContext works in the handler and every event
//     published with the handler's context (cqrs.Bus, the outbox) keeps the
//     incoming correlation id and takes the incoming event id as its
//     causation id. A message without a correlation id starts a
//     conversation: its own event id is the correlation id. A message whose
//     envelope does not decode is passed on with what could be read (the
//     event id is the message UUID at worst); the decoding error is the
//     handler's to report.
//   - gives the handler a logger (LoggerFromContext) and log attributes
//     (LogAttrs, NewLogHandler) with event_id, event_name, correlation_id
//     and handler. Payloads are never logged.
//   - copies correlation_id and causation_id onto the messages a plain
//     Watermill handler returns, when they do not set them.
//
// It never fails a message. It returns no error today; the error is there
// so that the constructor shape stays the same when configuration grows.
func NewCorrelation(cfg CorrelationConfig) (*Correlation, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Correlation{log: cfg.Logger}, nil
}

// Middleware is the message.HandlerMiddleware.
func (c *Correlation) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		env, _ := events.EnvelopeFromMessage(msg) // partial on error: still worth carrying
		if env.CorrelationID == "" {
			env.CorrelationID = env.ID
		}
		parent := msg.Context()
		ctx := events.ContextWithEnvelope(parent, env)
		ctx = withLogInfo(ctx, &logInfo{
			base:          c.log,
			eventID:       env.ID,
			eventName:     env.Name,
			correlationID: env.CorrelationID,
			handler:       message.HandlerNameFromCtx(parent),
		})
		msg.SetContext(ctx)
		defer msg.SetContext(parent)

		out, err := h(msg)
		if err != nil {
			return out, err
		}
		for _, m := range out {
			if m == nil {
				continue
			}
			if m.Metadata.Get(events.KeyCorrelationID) == "" && env.CorrelationID != "" {
				m.Metadata.Set(events.KeyCorrelationID, env.CorrelationID)
			}
			if m.Metadata.Get(events.KeyCausationID) == "" && env.ID != "" {
				m.Metadata.Set(events.KeyCausationID, env.ID)
			}
		}
		return out, nil
	}
}
