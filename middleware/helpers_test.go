package middleware_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports/memory"
)

// OrderPlaced and friends are the events of the tests.
type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Fail    bool   `json:"fail,omitempty"`
}

type StockReserved struct {
	OrderID string `json:"order_id"`
}

type ShipmentPlanned struct {
	OrderID string `json:"order_id"`
}

func newRegistry(t testing.TB) *events.Registry {
	t.Helper()
	reg := events.NewRegistry()
	require.NoError(t, events.Register[OrderPlaced](reg, "orders.order_placed"))
	require.NoError(t, events.Register[StockReserved](reg, "inventory.stock_reserved"))
	require.NoError(t, events.Register[ShipmentPlanned](reg, "shipping.shipment_planned"))
	return reg
}

// newEvent returns an encoded OrderPlaced message with a full envelope.
func newEvent(t testing.TB, reg *events.Registry, orderID string) *message.Message {
	t.Helper()
	msg, err := reg.NewMessage(context.Background(), OrderPlaced{OrderID: orderID}, "orders")
	require.NoError(t, err)
	return msg
}

func newMemory(t testing.TB) *memory.Transport {
	t.Helper()
	tr, err := memory.New(memory.Config{ResendInterval: time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// runRouter starts a router with one consumer handler and the middlewares,
// and stops it at cleanup.
func runRouter(t testing.TB, sub message.Subscriber, name, topic string, h message.NoPublishHandlerFunc, mws ...message.HandlerMiddleware) *message.Router {
	t.Helper()
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	r.AddMiddleware(mws...)
	r.AddConsumerHandler(name, topic, sub, h)
	startRouter(t, r)
	return r
}

func startRouter(t testing.TB, r *message.Router) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	select {
	case <-r.Running():
	case err := <-done:
		t.Fatalf("router stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("router did not start")
	}
	t.Cleanup(func() {
		_ = r.Close()
		<-done
	})
}

// collector receives what a consumer group gets on a topic, acking it.
type collector struct {
	mu   sync.Mutex
	msgs []*message.Message
}

func collect(t testing.TB, subs func(string) (message.Subscriber, error), group, topic string) *collector {
	t.Helper()
	sub, err := subs(group)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := sub.Subscribe(ctx, topic)
	require.NoError(t, err)
	c := &collector{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ch {
			c.mu.Lock()
			c.msgs = append(c.msgs, m)
			c.mu.Unlock()
			m.Ack()
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = sub.Close()
		<-done
	})
	return c
}

func (c *collector) all() []*message.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*message.Message(nil), c.msgs...)
}

func (c *collector) wait(t testing.TB, n int) []*message.Message {
	t.Helper()
	require.Eventually(t, func() bool { return len(c.all()) >= n }, 30*time.Second, 5*time.Millisecond,
		"want %d messages", n)
	return c.all()
}

// failingPublisher fails its first n publishes, then delegates.
type failingPublisher struct {
	message.Publisher
	mu    sync.Mutex
	fails int
	calls int
}

var errBroker = errors.New("broker unavailable")

func (p *failingPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	p.calls++
	fail := p.calls <= p.fails
	p.mu.Unlock()
	if fail {
		return errBroker
	}
	return p.Publisher.Publish(topic, msgs...)
}

// counter returns a read and an increment function of a shared count.
func counter() (func() int, func()) {
	var mu sync.Mutex
	n := 0
	return func() int { mu.Lock(); defer mu.Unlock(); return n }, func() { mu.Lock(); n++; mu.Unlock() }
}

// fastDelays is one delayed round of 10ms, for tests whose handlers keep
// failing: the default rounds take a minute.
var fastDelays = middleware.DelayedRetryConfig{Levels: []time.Duration{10 * time.Millisecond}}
