package middleware

import (
	"errors"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/tracing"
)

// TracingConfig configures Tracing. TracerProvider is required.
type TracingConfig struct {
	// TracerProvider creates the spans. Required.
	TracerProvider trace.TracerProvider
	// MessagingSystem is the messaging.system attribute, e.g. "rabbitmq"
	// or "kafka" (transports.Transport.MessagingSystem). Defaults to ""
	// (attribute left out).
	MessagingSystem string
}

// Tracing starts an OpenTelemetry consumer span per delivery. See NewTracing.
type Tracing struct {
	tracer trace.Tracer
	cfg    TracingConfig
}

// NewTracing returns the Tracing middleware. For each delivery it starts a
// consumer "process <topic>" span whose parent is the trace context carried
// in the message metadata (events.KeyTraceParent and KeyTraceState, written
// by Outbox.Add when tracing is on), so the handler's span continues the
// trace of the producer; the span is in the message context for the
// handler and for whatever it publishes. Attributes follow the OpenTelemetry
// messaging conventions: messaging.system, messaging.destination.name,
// messaging.consumer.group.name (the handler), messaging.message.id,
// messaging.operation.type and .name ("process"), plus eventkit.event.name.
// Retries are span events; an error left after the chain, or a dead letter,
// sets the span's status to Error. Default puts it outermost but for
// Recover when DefaultConfig.TracerProvider is set. It returns an error if
// TracerProvider is nil.
func NewTracing(cfg TracingConfig) (*Tracing, error) {
	if cfg.TracerProvider == nil {
		return nil, errors.New("middleware: TracingConfig.TracerProvider is required")
	}
	return &Tracing{tracer: tracing.Tracer(cfg.TracerProvider), cfg: cfg}, nil
}

// Middleware is the message.HandlerMiddleware.
func (t *Tracing) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		parent := msg.Context()
		topic := message.SubscribeTopicFromCtx(parent)
		id := msg.Metadata.Get(events.KeyEventID)
		if id == "" {
			id = msg.UUID
		}
		attrs := []attribute.KeyValue{
			tracing.DestinationName.String(topic),
			tracing.ConsumerGroupName.String(message.HandlerNameFromCtx(parent)),
			tracing.OperationType.String("process"),
			tracing.OperationName.String("process"),
			tracing.MessageID.String(id),
		}
		if name := msg.Metadata.Get(events.KeyName); name != "" {
			attrs = append(attrs, tracing.EventName.String(name))
		}
		if c := msg.Metadata.Get(events.KeyCorrelationID); c != "" {
			attrs = append(attrs, tracing.ConversationID.String(c))
		}
		if t.cfg.MessagingSystem != "" {
			attrs = append(attrs, tracing.System.String(t.cfg.MessagingSystem))
		}
		ctx, span := t.tracer.Start(tracing.Extract(parent, msg), "process "+topic,
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
		defer span.End()
		msg.SetContext(ctx)
		defer msg.SetContext(parent)
		out, err := h(msg)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "handling failed; message nacked")
		}
		return out, err
	}
}
