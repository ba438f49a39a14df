package forwarder

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/b2131a45/eventkit/internal/tracing"
)

// traceCreate starts one producer "create" span per message, a child of the
// span of ctx, and injects its context into the message metadata (W3C
// traceparent and tracestate), which the outbox row stores. The returned
// func ends the spans with the outcome of the insert. Without a tracer it
// does nothing.
func (o *Outbox) traceCreate(ctx context.Context, msgs []*message.Message, topics []string) func(error) {
	if o.tracer == nil || len(msgs) == 0 {
		return func(error) {}
	}
	return tracing.StartProducers(ctx, o.tracer, "create", o.cfg.MessagingSystem, msgs,
		func(i int) string { return topics[i] }, tracing.OutboxName.String(o.cfg.Name))
}

// tracePublish starts the relay's producer "send" span for one publish
// call of msgs to topic, linked to each message's creation span (the
// context Add stored in the row). The messages keep their creation
// context, so the consumer's span continues the trace of Add.
func (r *Relay) tracePublish(ctx context.Context, topic string, msgs []*message.Message) func(error) {
	if r.tracer == nil {
		return func(error) {}
	}
	links := make([]trace.Link, 0, len(msgs))
	for _, m := range msgs {
		if sc := tracing.SpanContext(m); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	attrs := []attribute.KeyValue{
		tracing.DestinationName.String(topic),
		tracing.OperationType.String("send"),
		tracing.OperationName.String("send"),
		tracing.OutboxName.String(r.ob.cfg.Name),
	}
	if len(msgs) == 1 {
		attrs = append(attrs, tracing.MessageID.String(msgs[0].UUID))
	} else {
		attrs = append(attrs, tracing.BatchMessageCount.Int(len(msgs)))
	}
	if r.cfg.MessagingSystem != "" {
		attrs = append(attrs, tracing.System.String(r.cfg.MessagingSystem))
	}
	_, span := r.tracer.Start(ctx, "send "+topic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithLinks(links...), trace.WithAttributes(attrs...))
	return func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "publish not confirmed")
		}
		span.End()
	}
}
