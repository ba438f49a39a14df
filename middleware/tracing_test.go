package middleware_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
)

// observed records what a middleware.Observer is told.
type observed struct {
	mu                       sync.Mutex
	handled, failed, retried int
	reasons                  []middleware.Reason
	dups                     int
	handlers                 map[string]bool
}

func (o *observed) Handled(ctx context.Context, _ time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.handled++
	if err != nil {
		o.failed++
	}
	o.handlers[message.HandlerNameFromCtx(ctx)+"@"+message.SubscribeTopicFromCtx(ctx)] = true
}

func (o *observed) Retried(context.Context, int) { o.mu.Lock(); o.retried++; o.mu.Unlock() }
func (o *observed) DeadLettered(_ context.Context, r middleware.Reason) {
	o.mu.Lock()
	o.reasons = append(o.reasons, r)
	o.mu.Unlock()
}
func (o *observed) Duplicate(context.Context) { o.mu.Lock(); o.dups++; o.mu.Unlock() }

// Default with a TracerProvider and an Observer: one consumer span per
// delivery continuing the producer's trace, retries as span events, a dead
// letter as the span's Error status; the observer sees every attempt,
// retry, dead letter and duplicate.
func TestDefault_TracingAndObserver(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := newMemory(t)
	reg := newRegistry(t)
	inbox, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
	require.NoError(t, err)
	obs := &observed{handlers: map[string]bool{}}
	chain, err := middleware.Default(middleware.DefaultConfig{
		Publisher: tr.Publisher(), Inbox: inbox, TracerProvider: tp, MessagingSystem: "memory", Observer: obs,
		Retry:        middleware.RetryConfig{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond},
		DelayedRetry: fastDelays,
	})
	require.NoError(t, err)
	require.NotNil(t, chain.Tracing)

	topic := testenv.Name(t, "tr")
	dlq := collect(t, tr.Subscriber, "dlq", middleware.DeadLetterTopic(topic))
	sub, err := tr.Subscriber("tracing")
	require.NoError(t, err)
	var spans sync.Map // order id → span context seen by the handler
	runRouter(t, sub, "tracing", topic, func(msg *message.Message) error {
		_, payload, err := reg.Decode(msg)
		if err != nil {
			return err
		}
		id := payload.(*OrderPlaced).OrderID
		spans.Store(id, trace.SpanContextFromContext(msg.Context()))
		if id == "poison" {
			return errors.New("always fails")
		}
		return nil
	}, chain.Middlewares()...)

	// The producer's span context travels in the metadata.
	_, producer := tp.Tracer("test").Start(context.Background(), "create")
	producer.End()
	good := newEvent(t, reg, "good")
	good.Metadata.Set(events.KeyTraceParent,
		"00-"+producer.SpanContext().TraceID().String()+"-"+producer.SpanContext().SpanID().String()+"-01")
	require.NoError(t, tr.Publisher().Publish(topic, good))
	dup := good.Copy()
	require.NoError(t, tr.Publisher().Publish(topic, dup))
	require.NoError(t, tr.Publisher().Publish(topic, newEvent(t, reg, "poison")))
	dlq.wait(t, 1)

	var process []sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		process = process[:0]
		for _, s := range rec.Ended() {
			if s.Name() == "process "+topic {
				process = append(process, s)
			}
		}
		return len(process) == 4
	}, 10*time.Second, 5*time.Millisecond)

	var goodSpans, poisonSpans []sdktrace.ReadOnlySpan
	for _, s := range process {
		if s.Parent().TraceID() == producer.SpanContext().TraceID() {
			goodSpans = append(goodSpans, s)
		} else {
			poisonSpans = append(poisonSpans, s)
		}
	}
	require.Len(t, goodSpans, 2, "the event and its duplicate continue the producer's trace")
	for _, s := range goodSpans {
		assert.Equal(t, producer.SpanContext().SpanID(), s.Parent().SpanID())
		assert.Equal(t, trace.SpanKindConsumer, s.SpanKind())
		assert.Equal(t, codes.Unset, s.Status().Code)
	}
	sc, _ := spans.Load("good")
	assert.Equal(t, producer.SpanContext().TraceID(), sc.(trace.SpanContext).TraceID(), "the handler runs in the trace")

	// The poison event: its first delivery starts a trace (no trace context
	// in its metadata) and ends in a delayed retry; the delayed delivery
	// continues that trace, as a child, and is dead-lettered.
	require.Len(t, poisonSpans, 2)
	first, last := poisonSpans[0], poisonSpans[1]
	if first.Parent().IsValid() {
		first, last = last, first
	}
	assert.False(t, first.Parent().IsValid(), "no trace context in its metadata: a new trace")
	assert.Equal(t, first.SpanContext().TraceID(), last.Parent().TraceID(), "one trace across the delay")
	assert.Equal(t, first.SpanContext().SpanID(), last.Parent().SpanID())
	delayedEvents := 0
	for _, ev := range first.Events() {
		if ev.Name == "delayed retry" {
			delayedEvents++
		}
	}
	assert.Equal(t, 1, delayedEvents)
	assert.Equal(t, codes.Error, last.Status().Code)
	assert.Equal(t, "dead-lettered: retries_exhausted", last.Status().Description)
	retries := 0
	for _, ev := range last.Events() {
		if ev.Name == "retry" {
			retries++
		}
	}
	assert.Equal(t, 2, retries)

	obs.mu.Lock()
	defer obs.mu.Unlock()
	assert.Equal(t, 7, obs.handled, "good once, poison three times in each of its two rounds; the duplicate never reaches the handler")
	assert.Equal(t, 6, obs.failed)
	assert.Equal(t, 4, obs.retried)
	assert.Equal(t, []middleware.Reason{middleware.ReasonRetriesExhausted}, obs.reasons)
	assert.Equal(t, 1, obs.dups)
	assert.Equal(t, map[string]bool{"tracing@" + topic: true}, obs.handlers)
}

func TestNewTracing_RequiresProvider(t *testing.T) {
	t.Parallel()
	_, err := middleware.NewTracing(middleware.TracingConfig{})
	assert.ErrorContains(t, err, "TracerProvider")
}
