package forwarder_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmcqrs "github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/kafkatest"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

// One trace from Outbox.Add (PostgreSQL outbox) to the handler, over a real
// broker: the create span of Add is the parent of the consumer's process
// span, the relay's send span links to it, the W3C trace context travels in
// the message metadata, and the attributes follow the messaging
// conventions.
func TestTracing_OneTraceFromAddToHandler(t *testing.T) {
	t.Parallel()
	t.Run("rabbitmq", func(t *testing.T) {
		t.Parallel()
		traceOver(t, testenv.AMQPURL(), "rabbitmq")
	})
	t.Run("kafka", func(t *testing.T) {
		t.Parallel()
		cluster := kafkatest.Cluster(t)
		traceOver(t, "kafka://"+strings.Join(cluster.ListenAddrs(), ","), "kafka")
	})
}

type handled struct {
	span        trace.SpanContext
	traceparent string
}

func traceOver(t *testing.T, url, system string) {
	ctx := context.Background()
	tr, err := transports.Open(ctx, url)
	if err != nil {
		testenv.Unavailable(t, url, err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	require.Equal(t, system, tr.MessagingSystem())

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	prefix := testenv.Name(t, "trace")
	topic := func(name string) string { return prefix + "." + name }
	e := newEnv(t, pgStd, func(c *forwarder.OutboxConfig) {
		c.TracerProvider = tp
		c.MessagingSystem = tr.MessagingSystem()
		c.Topic = topic
	})
	e.start(tr.Publisher(), fastRelay())

	inbox, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
	require.NoError(t, err)
	chain, err := middleware.Default(middleware.DefaultConfig{
		Publisher: tr.Publisher(), Inbox: inbox, Logger: testLogger(t),
		TracerProvider: tp, MessagingSystem: tr.MessagingSystem(),
	})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	router.AddMiddleware(chain.Middlewares()...)
	proc, err := cqrs.NewProcessor(router, tr.Subscriber, cqrs.ProcessorConfig{DeadLetter: tr.Publisher(), Registry: e.reg, Topic: topic})
	require.NoError(t, err)
	got := make(chan handled, 1)
	handler := prefix + "_handler"
	require.NoError(t, proc.AddHandlers(cqrs.NewHandler(handler, func(ctx context.Context, _ *OrderCreated) error {
		msg := wmcqrs.OriginalMessageFromCtx(ctx)
		got <- handled{span: trace.SpanContextFromContext(ctx), traceparent: msg.Metadata.Get(events.KeyTraceParent)}
		return nil
	})))
	rctx, stop := context.WithCancel(ctx)
	routerDone := make(chan struct{})
	go func() {
		defer close(routerDone)
		_ = router.Run(rctx)
	}()
	t.Cleanup(func() {
		stop()
		<-routerDone
	})
	select {
	case <-router.Running():
	case <-time.After(30 * time.Second):
		t.Fatal("router did not start")
	}

	// The application's own span, e.g. an HTTP request's.
	actx, root := tp.Tracer("test").Start(ctx, "POST /orders")
	tx := e.begin(actx)
	require.NoError(t, e.ob.Add(actx, tx.raw, OrderCreated{ID: "o-1", Seq: 1}))
	require.NoError(t, tx.commit())
	root.End()

	var h handled
	select {
	case h = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("event not handled")
	}

	// The process span ends after the handler returned.
	var create, send, process sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		create, send, process = nil, nil, nil
		for _, s := range rec.Ended() {
			switch {
			case strings.HasPrefix(s.Name(), "create "):
				create = s
			case strings.HasPrefix(s.Name(), "send "):
				send = s
			case strings.HasPrefix(s.Name(), "process "):
				process = s
			}
		}
		return create != nil && send != nil && process != nil
	}, 30*time.Second, 10*time.Millisecond)

	dest := topic("test.order_created")
	traceID := root.SpanContext().TraceID()

	// Add: a producer create span, child of the application's span.
	assert.Equal(t, "create "+dest, create.Name())
	assert.Equal(t, trace.SpanKindProducer, create.SpanKind())
	assert.Equal(t, traceID, create.SpanContext().TraceID())
	assert.Equal(t, root.SpanContext().SpanID(), create.Parent().SpanID())
	attrs := attrMap(create.Attributes())
	assert.Equal(t, "create", attrs["messaging.operation.type"])
	assert.Equal(t, dest, attrs["messaging.destination.name"])
	assert.Equal(t, system, attrs["messaging.system"])
	assert.Equal(t, "test.order_created", attrs["eventkit.event.name"])
	eventID := attrs["messaging.message.id"]
	assert.NotEmpty(t, eventID)

	// The metadata carries the create span's W3C context, through the row.
	assert.Equal(t, "00-"+traceID.String()+"-"+create.SpanContext().SpanID().String()+"-01", h.traceparent)

	// The relay: a producer send span linked to the create span.
	assert.Equal(t, "send "+dest, send.Name())
	assert.Equal(t, trace.SpanKindProducer, send.SpanKind())
	require.Len(t, send.Links(), 1)
	assert.Equal(t, create.SpanContext().SpanID(), send.Links()[0].SpanContext.SpanID())
	assert.Equal(t, traceID, send.Links()[0].SpanContext.TraceID())
	sattrs := attrMap(send.Attributes())
	assert.Equal(t, "send", sattrs["messaging.operation.type"])
	assert.Equal(t, dest, sattrs["messaging.destination.name"])
	assert.Equal(t, system, sattrs["messaging.system"])
	assert.Equal(t, eventID, sattrs["messaging.message.id"])

	// The consumer: a process span in the same trace, child of create, and
	// the handler runs inside it.
	assert.Equal(t, "process "+dest, process.Name())
	assert.Equal(t, trace.SpanKindConsumer, process.SpanKind())
	assert.Equal(t, traceID, process.SpanContext().TraceID())
	assert.Equal(t, create.SpanContext().SpanID(), process.Parent().SpanID())
	assert.True(t, process.Parent().IsRemote())
	assert.Equal(t, process.SpanContext().SpanID(), h.span.SpanID(), "handler ctx carries the process span")
	pattrs := attrMap(process.Attributes())
	assert.Equal(t, "process", pattrs["messaging.operation.type"])
	assert.Equal(t, "process", pattrs["messaging.operation.name"])
	assert.Equal(t, dest, pattrs["messaging.destination.name"])
	assert.Equal(t, handler, pattrs["messaging.consumer.group.name"])
	assert.Equal(t, system, pattrs["messaging.system"])
	assert.Equal(t, eventID, pattrs["messaging.message.id"])
	assert.Equal(t, eventID, pattrs["messaging.message.conversation_id"], "correlation id defaults to the event id")
}

// Tracing is off by default: no span context is written into the rows.
func TestTracing_OffByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgStd)
	b := &memBroker{}
	e.start(b, fastRelay())
	ctx, root := sdktrace.NewTracerProvider().Tracer("test").Start(context.Background(), "request")
	defer root.End()
	tx := e.begin(ctx)
	require.NoError(t, e.ob.Add(ctx, tx.raw, OrderCreated{ID: "o-1"}))
	require.NoError(t, tx.commit())
	b.waitCount(t, 1, 30*time.Second)
	m := b.messages()[0].msg
	assert.Empty(t, m.Metadata.Get(events.KeyTraceParent))
	assert.Empty(t, m.Metadata.Get(events.KeyTraceState))
}

func attrMap(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}
