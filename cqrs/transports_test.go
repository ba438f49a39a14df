package cqrs_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/kafkatest"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports"
)

// ShopOrderPlaced is version 2 of a contract whose v1 had "amount" in units.
type ShopOrderPlaced struct {
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
}

func (e ShopOrderPlaced) PartitionKey() string { return e.OrderID }

type StockHeld struct {
	OrderID string `json:"order_id"`
}

func shopPlacedV1toV2(old []byte) ([]byte, error) {
	var v1 struct {
		OrderID string `json:"order_id"`
		Amount  int64  `json:"amount"`
	}
	if err := json.Unmarshal(old, &v1); err != nil {
		return nil, err
	}
	return json.Marshal(ShopOrderPlaced{OrderID: v1.OrderID, AmountCents: v1.Amount * 100})
}

// The public API over real transports: two versions with an upcaster, the
// typed payload, every envelope field, correlation kept and causation set
// across two hops, and a corrupt payload as a permanent error.
func TestBusAndProcessorOverTransports(t *testing.T) {
	t.Parallel()
	t.Run("mem", func(t *testing.T) {
		t.Parallel()
		overTransport(t, "mem://")
	})
	t.Run("amqp", func(t *testing.T) {
		t.Parallel()
		overTransport(t, testenv.AMQPURL())
	})
	t.Run("kafka", func(t *testing.T) {
		t.Parallel()
		cluster := kafkatest.Cluster(t)
		overTransport(t, "kafka://"+strings.Join(cluster.ListenAddrs(), ","))
	})
}

type hop struct {
	env     events.Envelope
	placed  *ShopOrderPlaced
	stock   *StockHeld
	handler string
}

func overTransport(t *testing.T, url string) {
	ctx := context.Background()
	tr, err := transports.Open(ctx, url)
	if err != nil {
		testenv.Unavailable(t, url, err)
	}
	defer tr.Close()

	reg := events.NewRegistry()
	require.NoError(t, events.Register[ShopOrderPlaced](reg, "shop.order_placed", events.Version(2), events.Upcast(1, shopPlacedV1toV2)))
	require.NoError(t, events.Register[StockHeld](reg, "shop.stock_held"))
	prefix := testenv.Name(t, "cqrs")
	topic := func(name string) string { return prefix + "." + name }
	bus, err := cqrs.NewBus(tr.Publisher(), cqrs.BusConfig{Registry: reg, Source: "shop", Topic: topic})
	require.NoError(t, err)

	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	errs := make(chan error, 10)
	router.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err != nil {
				errs <- err
			}
			return out, nil // ack: the test looks at the error itself
		}
	})
	proc, err := cqrs.NewProcessor(router, tr.Subscriber, cqrs.ProcessorConfig{DeadLetter: tr.Publisher(), Registry: reg, Topic: topic})
	require.NoError(t, err)
	hops := make(chan hop, 10)
	require.NoError(t, proc.AddHandlers(
		cqrs.NewHandler(prefix+"_inventory", func(ctx context.Context, e *ShopOrderPlaced) error {
			env, _ := events.EnvelopeFromContext(ctx)
			hops <- hop{env: env, placed: e, handler: "inventory"}
			return bus.Publish(ctx, StockHeld{OrderID: e.OrderID})
		}),
		cqrs.NewHandler(prefix+"_payments", func(ctx context.Context, e *StockHeld) error {
			env, _ := events.EnvelopeFromContext(ctx)
			hops <- hop{env: env, stock: e, handler: "payments"}
			return nil
		}),
	))
	go func() { _ = router.Run(ctx) }()
	defer router.Close()
	select {
	case <-router.Running():
	case <-time.After(30 * time.Second):
		t.Fatal("router did not start")
	}

	next := func() hop {
		t.Helper()
		select {
		case h := <-hops:
			return h
		case err := <-errs:
			t.Fatalf("handler error: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("no event")
		}
		return hop{}
	}

	before := time.Now().UTC()
	require.NoError(t, bus.Publish(events.WithCorrelationID(ctx, "conversation-1"), ShopOrderPlaced{OrderID: "o-1", AmountCents: 1999}))
	first := next()
	second := next()
	require.Equal(t, "inventory", first.handler)
	require.Equal(t, "payments", second.handler)

	assert.Equal(t, &ShopOrderPlaced{OrderID: "o-1", AmountCents: 1999}, first.placed)
	env := first.env
	id, err := uuid.Parse(env.ID)
	require.NoError(t, err)
	assert.Equal(t, uuid.Version(7), id.Version())
	assert.Equal(t, "shop.order_placed", env.Name)
	assert.Equal(t, 2, env.Version)
	assert.Equal(t, "shop", env.Source)
	assert.Equal(t, "o-1", env.PartitionKey)
	assert.Equal(t, "conversation-1", env.CorrelationID)
	assert.Empty(t, env.CausationID)
	assert.Equal(t, "application/json", env.ContentType)
	assert.WithinDuration(t, before, env.OccurredAt, time.Minute)
	assert.Equal(t, time.UTC, env.OccurredAt.Location())

	assert.Equal(t, &StockHeld{OrderID: "o-1"}, second.stock)
	assert.Equal(t, "conversation-1", second.env.CorrelationID, "correlation kept across the hop")
	assert.Equal(t, env.ID, second.env.CausationID, "causation is the handled event")
	assert.Equal(t, "shop", second.env.Source)

	// An old producer still sends v1: the handler gets it upcast.
	old := message.NewMessage(watermill.NewUUID(), []byte(`{"order_id":"o-2","amount":7}`))
	old.Metadata.Set(events.KeyName, "shop.order_placed")
	old.Metadata.Set(events.KeyVersion, "1")
	require.NoError(t, tr.Publisher().Publish(topic("shop.order_placed"), old))
	upcast := next()
	assert.Equal(t, &ShopOrderPlaced{OrderID: "o-2", AmountCents: 700}, upcast.placed)
	assert.Equal(t, 1, upcast.env.Version)
	assert.Equal(t, old.UUID, upcast.env.CorrelationID, "no correlation id: the event's own id")
	next() // its StockHeld

	// A corrupt payload is a permanent error, not a crash: the processor
	// dead-letters it (ProcessorConfig.DeadLetter), once.
	bad := message.NewMessage(watermill.NewUUID(), []byte(`{"order_id":`))
	bad.Metadata.Set(events.KeyName, "shop.order_placed")
	bad.Metadata.Set(events.KeyVersion, "2")
	require.NoError(t, tr.Publisher().Publish(topic("shop.order_placed"), bad))
	deadline := time.After(30 * time.Second)
	for proc.DeadLettered() == 0 {
		select {
		case err := <-errs:
			t.Fatalf("corrupt payload returned to the router: %v", err)
		case h := <-hops:
			t.Fatalf("corrupt payload handled: %+v", h)
		case <-deadline:
			t.Fatal("corrupt payload not dead-lettered")
		case <-time.After(10 * time.Millisecond):
		}
	}
	assert.EqualValues(t, 1, proc.DeadLettered())
}
