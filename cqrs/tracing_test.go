package cqrs_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/middleware"
)

// A Bus with a TracerProvider starts a producer span per event and carries
// its context to the consumer's middleware.Tracing span; a handler that
// publishes with its context continues the same trace: one trace across
// two hops, each span the child of the one before.
func TestBusTracesAcrossHops(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	b := setup(t)
	tracingMW, err := middleware.NewTracing(middleware.TracingConfig{TracerProvider: tp, MessagingSystem: "memory"})
	require.NoError(t, err)
	b.router.AddMiddleware(tracingMW.Middleware)
	bus, err := cqrs.NewBus(b.pubsub, cqrs.BusConfig{Registry: b.reg, Source: "orders", TracerProvider: tp, MessagingSystem: "memory"})
	require.NoError(t, err)
	proc, err := cqrs.NewProcessor(b.router, b.subscriberFactory, cqrs.ProcessorConfig{DeadLetter: b.pubsub, Registry: b.reg})
	require.NoError(t, err)
	done := make(chan struct{})
	require.NoError(t, proc.AddHandlers(
		cqrs.NewHandler("inventory.reserve", func(ctx context.Context, e *OrderCreated) error {
			return bus.Publish(ctx, StockReserved(*e))
		}),
		cqrs.NewHandler("payments.charge", func(ctx context.Context, _ *StockReserved) error {
			close(done)
			return nil
		}),
	))
	b.run(t)

	ctx, root := tp.Tracer("test").Start(context.Background(), "http POST /orders")
	require.NoError(t, bus.Publish(ctx, OrderCreated{OrderID: "o-1"}))
	root.End()
	select {
	case <-done:
	case err := <-b.errs:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("the second hop was not handled")
	}

	byName := map[string]sdktrace.ReadOnlySpan{}
	require.Eventually(t, func() bool {
		for _, s := range rec.Ended() {
			byName[s.Name()] = s
		}
		return len(byName) == 5
	}, 5*time.Second, 5*time.Millisecond, "spans: %v", byName)
	chain := []string{"http POST /orders", "send orders.order_created", "process orders.order_created",
		"send inventory.stock_reserved", "process inventory.stock_reserved"}
	for i, name := range chain {
		s, ok := byName[name]
		require.True(t, ok, "no span %q", name)
		assert.Equal(t, root.SpanContext().TraceID(), s.SpanContext().TraceID(), "%s is in another trace", name)
		if i > 0 {
			assert.Equal(t, byName[chain[i-1]].SpanContext().SpanID(), s.Parent().SpanID(), "%s's parent", name)
		}
	}
	send := byName["send orders.order_created"]
	assert.Equal(t, trace.SpanKindProducer, send.SpanKind())
	attrs := map[string]string{}
	for _, kv := range send.Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	assert.Equal(t, "send", attrs["messaging.operation.type"])
	assert.Equal(t, "orders.order_created", attrs["messaging.destination.name"])
	assert.Equal(t, "memory", attrs["messaging.system"])
	assert.NotEmpty(t, attrs["messaging.message.id"])
}

// Without a TracerProvider the Bus writes no trace context.
func TestBusTracingOffByDefault(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bus, err := cqrs.NewBus(b.pubsub, cqrs.BusConfig{Registry: b.reg})
	require.NoError(t, err)
	msgs, err := b.pubsub.Subscribe(context.Background(), "orders.order_created")
	require.NoError(t, err)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, span := tp.Tracer("test").Start(context.Background(), "caller")
	defer span.End()
	require.NoError(t, bus.Publish(ctx, OrderCreated{OrderID: "o-1"}))
	m := <-msgs
	m.Ack()
	assert.Empty(t, m.Metadata.Get(events.KeyTraceParent))
}
