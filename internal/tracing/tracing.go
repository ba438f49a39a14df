// Package tracing holds what the outbox, the relay and the consumer chain
// share to trace events with OpenTelemetry: the W3C trace context carried in
// message metadata (events.KeyTraceParent, events.KeyTraceState) and the
// messaging semantic-convention attributes.
package tracing

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/b2131a45/eventkit/events"
)

// ScopeName is the instrumentation scope of eventkit's tracers.
const ScopeName = "github.com/b2131a45/eventkit"

// Messaging semantic-convention attribute keys (OpenTelemetry semconv
// v1.26+), spelled out to avoid depending on a semconv package version.
const (
	System            = attribute.Key("messaging.system")
	DestinationName   = attribute.Key("messaging.destination.name")
	OperationType     = attribute.Key("messaging.operation.type")
	OperationName     = attribute.Key("messaging.operation.name")
	MessageID         = attribute.Key("messaging.message.id")
	ConversationID    = attribute.Key("messaging.message.conversation_id")
	ConsumerGroupName = attribute.Key("messaging.consumer.group.name")
	BatchMessageCount = attribute.Key("messaging.batch.message_count")
	EventName         = attribute.Key("eventkit.event.name")
	OutboxName        = attribute.Key("eventkit.outbox.name")
)

// propagator is the W3C trace-context propagator: traceparent and
// tracestate, the metadata keys of events.
var propagator = propagation.TraceContext{}

// Tracer returns the eventkit tracer of tp, or nil when tp is nil (tracing
// off).
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(ScopeName)
}

// carrier adapts message metadata to a propagation.TextMapCarrier.
type carrier message.Metadata

func (c carrier) Get(key string) string { return c[key] }
func (c carrier) Set(key, value string) { c[key] = value }
func (c carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes the span context of ctx into msg's metadata as traceparent
// and tracestate.
func Inject(ctx context.Context, msg *message.Message) {
	if msg.Metadata == nil {
		msg.Metadata = message.Metadata{}
	}
	propagator.Inject(ctx, carrier(msg.Metadata))
}

// Extract returns ctx with the remote span context carried in msg's
// metadata, if any.
func Extract(ctx context.Context, msg *message.Message) context.Context {
	if msg.Metadata.Get(events.KeyTraceParent) == "" {
		return ctx
	}
	return propagator.Extract(ctx, carrier(msg.Metadata))
}

// SpanContext returns the span context carried in msg's metadata; it is not
// valid when there is none.
func SpanContext(msg *message.Message) trace.SpanContext {
	return trace.SpanContextFromContext(Extract(context.Background(), msg))
}
