package events

import (
	"context"

	wmcqrs "github.com/ThreeDotsLabs/watermill/components/cqrs"
)

type envelopeKey struct{}
type correlationKey struct{}

// ContextWithEnvelope returns a context that carries env as the envelope of
// the message being handled. eventkit's processor and Correlation middleware
// call it; events published with that context keep env's correlation id and
// take env's id as their causation id.
func ContextWithEnvelope(ctx context.Context, env Envelope) context.Context {
	return context.WithValue(ctx, envelopeKey{}, env)
}

// EnvelopeFromContext returns the envelope of the message being handled.
// Inside an eventkit handler it is always present. It also reads the message
// that Watermill's CQRS processor stores in the context, so it works in stock
// Watermill handlers too; ok is false outside any handler.
func EnvelopeFromContext(ctx context.Context) (Envelope, bool) {
	if env, ok := ctx.Value(envelopeKey{}).(Envelope); ok {
		return env, true
	}
	if msg := wmcqrs.OriginalMessageFromCtx(ctx); msg != nil {
		env, err := EnvelopeFromMessage(msg)
		if err == nil {
			return env, true
		}
	}
	return Envelope{}, false
}

// WithCorrelationID returns a context whose published events carry id as
// their correlation id. Use it at an edge, e.g. with an HTTP request's id.
// It takes precedence over the correlation id of the message being handled.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// CorrelationIDFromContext returns the correlation id that an event published
// with ctx would carry, or "" when there is none (the event then starts a new
// conversation and uses its own id).
func CorrelationIDFromContext(ctx context.Context) string {
	if id, ok := ctx.Value(correlationKey{}).(string); ok && id != "" {
		return id
	}
	if env, ok := EnvelopeFromContext(ctx); ok {
		if env.CorrelationID != "" {
			return env.CorrelationID
		}
		return env.ID
	}
	return ""
}

// CausationIDFromContext returns the id of the event being handled, or "".
func CausationIDFromContext(ctx context.Context) string {
	if env, ok := EnvelopeFromContext(ctx); ok {
		return env.ID
	}
	return ""
}
