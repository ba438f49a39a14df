package cqrs_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/middleware"
)

type OrderCreated struct {
	OrderID string `json:"order_id"`
}

func (e OrderCreated) PartitionKey() string { return e.OrderID }

type StockReserved struct {
	OrderID string `json:"order_id"`
}

type PaymentProcessed struct {
	OrderID string `json:"order_id"`
}

type bundle struct {
	reg    *events.Registry
	pubsub *gochannel.GoChannel
	router *message.Router
	ran    bool
	errs   chan error
}

// setup returns a registry, an in-memory pub/sub and a router whose handler
// errors are reported on errs (and then swallowed, so nothing loops).
func setup(t *testing.T) *bundle {
	t.Helper()
	reg := events.NewRegistry()
	require.NoError(t, events.Register[OrderCreated](reg, "orders.order_created"))
	require.NoError(t, events.Register[StockReserved](reg, "inventory.stock_reserved"))
	require.NoError(t, events.Register[PaymentProcessed](reg, "payments.payment_processed"))
	ps := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	b := &bundle{reg: reg, pubsub: ps, router: router, errs: make(chan error, 100)}
	router.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err != nil {
				b.errs <- err
			}
			return out, nil
		}
	})
	t.Cleanup(func() {
		if b.ran {
			require.NoError(t, router.Close())
		}
		require.NoError(t, ps.Close())
	})
	return b
}

func (b *bundle) run(t *testing.T) {
	t.Helper()
	b.ran = true
	go func() { _ = b.router.Run(context.Background()) }()
	select {
	case <-b.router.Running():
	case <-time.After(5 * time.Second):
		t.Fatal("router did not start")
	}
}

// subscriberFactory hands out the shared GoChannel; closing what it hands out
// (the router does, and so does the processor's dead-letter set-up) must not
// close the GoChannel under the other handlers.
func (b *bundle) subscriberFactory(string) (message.Subscriber, error) {
	return sharedSubscriber{b.pubsub}, nil
}

type sharedSubscriber struct{ message.Subscriber }

func (sharedSubscriber) Close() error { return nil }

func TestBusPublishesWithEnvelope(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bus, err := cqrs.NewBus(b.pubsub, cqrs.BusConfig{Registry: b.reg, Source: "orders",
		Topic: func(name string) string { return "t." + name }})
	require.NoError(t, err)
	msgs, err := b.pubsub.Subscribe(context.Background(), "t.orders.order_created")
	require.NoError(t, err)

	ctx := events.WithCorrelationID(context.Background(), "req-7")
	require.NoError(t, bus.Publish(ctx, OrderCreated{OrderID: "o-1"}, &OrderCreated{OrderID: "o-2"}))
	keys := map[string]bool{}
	for range 2 {
		select {
		case msg := <-msgs:
			msg.Ack()
			env, err := events.EnvelopeFromMessage(msg)
			require.NoError(t, err)
			keys[env.PartitionKey] = true
			assert.Equal(t, "req-7", env.CorrelationID)
			assert.Equal(t, "orders", env.Source)
			assert.Equal(t, 1, env.Version)
			assert.Equal(t, msg.UUID, env.ID)
		case <-time.After(5 * time.Second):
			t.Fatal("no message")
		}
	}
	assert.Equal(t, map[string]bool{"o-1": true, "o-2": true}, keys)

	err = bus.Publish(ctx, OrderCreated{}, struct{ X int }{})
	assert.ErrorIs(t, err, events.ErrNotRegistered)
}

func TestNewBusAndProcessorValidate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := cqrs.NewBus(nil, cqrs.BusConfig{Registry: b.reg})
	assert.Error(t, err)
	_, err = cqrs.NewBus(b.pubsub, cqrs.BusConfig{})
	assert.ErrorContains(t, err, "Registry")
	_, err = cqrs.NewProcessor(nil, b.subscriberFactory, cqrs.ProcessorConfig{DeadLetter: b.pubsub, Registry: b.reg})
	assert.Error(t, err)
	_, err = cqrs.NewProcessor(b.router, nil, cqrs.ProcessorConfig{DeadLetter: b.pubsub, Registry: b.reg})
	assert.Error(t, err)
	_, err = cqrs.NewProcessor(b.router, b.subscriberFactory, cqrs.ProcessorConfig{DeadLetter: b.pubsub})
	assert.ErrorContains(t, err, "Registry")
	_, err = cqrs.NewProcessor(b.router, b.subscriberFactory, cqrs.ProcessorConfig{Registry: b.reg})
	assert.ErrorContains(t, err, "DeadLetter is required")

	proc, err := cqrs.NewProcessor(b.router, b.subscriberFactory, cqrs.ProcessorConfig{DeadLetter: b.pubsub, Registry: b.reg})
	require.NoError(t, err)
	noop := func(context.Context, *OrderCreated) error { return nil }
	require.NoError(t, proc.AddHandlers(cqrs.NewHandler("h1", noop)))
	assert.ErrorContains(t, proc.AddHandlers(cqrs.NewHandler("h1", noop)), "already used")
	assert.ErrorContains(t, proc.AddHandlers(cqrs.NewHandler("bad name!", noop)), "invalid handler name")
	assert.ErrorIs(t, proc.AddHandlers(cqrs.NewHandler("h2", func(context.Context, *struct{ Y int }) error { return nil })), events.ErrNotRegistered)
	// Only the handler added is a subscription; the ones refused are not.
	assert.Equal(t, []cqrs.Subscription{{Handler: "h1", Event: "orders.order_created", Topic: "orders.order_created"}}, proc.Subscriptions())
}

// Two hops: orders publishes OrderCreated; inventory handles it and publishes
// StockReserved; payments handles that and publishes PaymentProcessed.
func TestHandlersPropagateCorrelationAndCausation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bus, err := cqrs.NewBus(b.pubsub, cqrs.BusConfig{Registry: b.reg, Source: "test"})
	require.NoError(t, err)
	proc, err := cqrs.NewProcessor(b.router, b.subscriberFactory, cqrs.ProcessorConfig{DeadLetter: b.pubsub, Registry: b.reg})
	require.NoError(t, err)

	var mu sync.Mutex
	seen := map[string]events.Envelope{}
	record := func(ctx context.Context) {
		env, ok := events.EnvelopeFromContext(ctx)
		require.True(t, ok)
		mu.Lock()
		seen[env.Name] = env
		mu.Unlock()
	}
	done := make(chan *PaymentProcessed, 1)
	require.NoError(t, proc.AddHandlers(
		cqrs.NewHandler("inventory.reserve", func(ctx context.Context, e *OrderCreated) error {
			record(ctx)
			return bus.Publish(ctx, StockReserved(*e))
		}),
		cqrs.NewHandler("payments.charge", func(ctx context.Context, e *StockReserved) error {
			record(ctx)
			return bus.Publish(ctx, PaymentProcessed(*e))
		}),
		cqrs.NewHandler("audit.payments", func(ctx context.Context, e *PaymentProcessed) error {
			record(ctx)
			done <- e
			return nil
		}),
	))
	b.run(t)

	require.NoError(t, bus.Publish(events.WithCorrelationID(context.Background(), "conv-1"), OrderCreated{OrderID: "o-5"}))
	select {
	case e := <-done:
		assert.Equal(t, "o-5", e.OrderID)
	case err := <-b.errs:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("chain did not complete")
	}
	mu.Lock()
	defer mu.Unlock()
	oc, sr, pp := seen["orders.order_created"], seen["inventory.stock_reserved"], seen["payments.payment_processed"]
	for _, env := range []events.Envelope{oc, sr, pp} {
		assert.Equal(t, "conv-1", env.CorrelationID, env.Name)
		assert.Equal(t, "test", env.Source)
	}
	assert.Empty(t, oc.CausationID)
	assert.Equal(t, oc.ID, sr.CausationID)
	assert.Equal(t, sr.ID, pp.CausationID)
}

func TestProcessorSkipsOtherTypesAndRejectsBadMessages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const topic = "shared"
	proc, err := cqrs.NewProcessor(b.router, b.subscriberFactory, cqrs.ProcessorConfig{DeadLetter: b.pubsub, Registry: b.reg,
		Topic: func(string) string { return topic }})
	require.NoError(t, err)
	handled := make(chan string, 10)
	require.NoError(t, proc.AddHandlers(cqrs.NewHandler("only-orders", func(_ context.Context, e *OrderCreated) error {
		handled <- e.OrderID
		return nil
	})))
	b.run(t)

	bus, err := cqrs.NewBus(b.pubsub, cqrs.BusConfig{Registry: b.reg, Topic: func(string) string { return topic }})
	require.NoError(t, err)
	require.NoError(t, bus.Publish(context.Background(), StockReserved{OrderID: "other"}, OrderCreated{OrderID: "mine"}))
	select {
	case id := <-handled:
		assert.Equal(t, "mine", id)
	case err := <-b.errs:
		t.Fatal(err)
	case <-time.After(5 * time.Second):
		t.Fatal("not handled")
	}
	assert.Eventually(t, func() bool { return proc.Skipped() == 1 }, 5*time.Second, 5*time.Millisecond)

	// Bad messages are dead-lettered by the processor itself (no
	// PoisonQueue on this router) with their reason, once: never returned
	// to be redelivered forever.
	dlq, err := b.pubsub.Subscribe(context.Background(), middleware.DeadLetterTopic(topic))
	require.NoError(t, err)
	bad := func(name, payload string) *message.Message {
		m := message.NewMessage(watermill.NewUUID(), []byte(payload))
		if name != "" {
			m.Metadata.Set(events.KeyName, name)
		}
		return m
	}
	for _, c := range []struct {
		msg    *message.Message
		reason middleware.Reason
	}{
		{bad("orders.order_created", `{"order_id":`), middleware.ReasonDecode},
		{bad("nobody.knows", `{}`), middleware.ReasonUnknownEvent},
		{bad("", `{}`), middleware.ReasonMissingName},
	} {
		require.NoError(t, b.pubsub.Publish(topic, c.msg))
		select {
		case dl := <-dlq:
			dl.Ack()
			assert.Equal(t, c.msg.UUID, dl.UUID)
			assert.Equal(t, string(c.reason), dl.Metadata.Get(middleware.KeyReason), dl.Metadata.Get(middleware.KeyError))
			assert.Equal(t, "only-orders", dl.Metadata.Get(middleware.KeyHandler))
		case err := <-b.errs:
			t.Fatalf("bad message returned to the router: %v", err)
		case id := <-handled:
			t.Fatalf("bad message handled as %q", id)
		case <-time.After(5 * time.Second):
			t.Fatal("bad message not dead-lettered")
		}
	}
	assert.EqualValues(t, 3, proc.DeadLettered())
}
