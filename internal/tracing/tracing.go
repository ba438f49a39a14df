// Package tracing holds what the outbox, the relay and the consumer chain
// share to trace events with OpenTelemetry: the W3C trace context carried in
// message metadata (events.KeyTraceParent, events.KeyTraceState) and the
// messaging semantic-convention attributes.
package tracing

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
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

// StartProducers starts one producer span "<op> <topic>" per message, a
// child of the span of ctx, with the messaging attributes of the message
// (destination, operation op, message id, event name, conversation id,
// system when not "") and extra, and injects each span's context into its
// message's metadata. topic gives the topic of message i. The returned
// func ends the spans, recording err on each when it is not nil.
func StartProducers(ctx context.Context, tr trace.Tracer, op, system string, msgs []*message.Message, topic func(i int) string, extra ...attribute.KeyValue) func(error) {
	spans := make([]trace.Span, len(msgs))
	for i, m := range msgs {
		attrs := append([]attribute.KeyValue{
			DestinationName.String(topic(i)),
			OperationType.String(op),
			OperationName.String(op),
			MessageID.String(m.UUID),
			EventName.String(m.Metadata.Get(events.KeyName)),
		}, extra...)
		if id := m.Metadata.Get(events.KeyCorrelationID); id != "" {
			attrs = append(attrs, ConversationID.String(id))
		}
		if system != "" {
			attrs = append(attrs, System.String(system))
		}
		sctx, span := tr.Start(ctx, op+" "+topic(i), trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
		Inject(sctx, m)
		spans[i] = span
	}
	return func(err error) {
		for _, s := range spans {
			if err != nil {
				s.RecordError(err)
				s.SetStatus(codes.Error, op+" failed")
			}
			s.End()
		}
	}
}
