package forwarder_test

import (
	"context"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
	"github.com/b2131a45/eventkit/transports/amqp"
)

// TestBrokerOutageMidDrainRelayAndConsumerResume cuts RabbitMQ away (a TCP
// proxy drops every connection and refuses new ones; the shared broker is
// not touched) while the relay drains and a consumer (middleware.Default,
// inbox) consumes, both through transports.Open. The outage lasts
// EVENTKIT_FAULT_OUTAGE_MS (default 3,000; TestRelay_RabbitMQStoppedMidDrain
// stops a real node for 10 s). Nothing is lost, no attempt is
// counted, and relay and consumer resume on their own: nothing restarted.
func TestBrokerOutageMidDrainRelayAndConsumerResume(t *testing.T) {
	t.Parallel()
	outage := time.Duration(envInt("EVENTKIT_FAULT_OUTAGE_MS", 3_000)) * time.Millisecond
	conn := rabbit(t)
	var topic string
	e := newEnv(t, pgStd, func(c *forwarder.OutboxConfig) {
		topic = "eventkit.test." + c.Name
		c.Topic = func(string) string { return topic }
	})
	const group = "outage.consumer"
	t.Cleanup(func() {
		if ch, err := conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(amqp.QueueName(topic, group), false, false, false)
			_ = ch.ExchangeDelete(topic, false, false)
			_ = ch.Close()
		}
	})

	u, err := url.Parse(testenv.AMQPURL())
	require.NoError(t, err)
	px := newProxy(t, u.Host)
	via := *u
	via.Host = px.ln.Addr().String()
	via.RawQuery = "reconnect_interval=50ms&dial_timeout=2s&confirm_timeout=5s"
	ctx := context.Background()
	open := func() *transports.Transport {
		tr, err := transports.Open(ctx, via.String())
		require.NoError(t, err)
		t.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	relayTr, consumerTr := open(), open()

	// The consumer.
	inbox, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
	require.NoError(t, err)
	chain, err := middleware.Default(middleware.DefaultConfig{Publisher: consumerTr.Publisher(), Inbox: inbox, Subscribers: consumerTr.Subscriber, Logger: testLogger(t)})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	var mu sync.Mutex
	wire, effects := map[string]int{}, map[string]int{}
	router.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(m *message.Message) ([]*message.Message, error) {
			mu.Lock()
			wire[m.UUID]++
			mu.Unlock()
			return h(m)
		}
	})
	router.AddMiddleware(chain.Middlewares()...)
	sub, err := consumerTr.Subscriber(group)
	require.NoError(t, err)
	require.NoError(t, sub.(message.SubscribeInitializer).SubscribeInitialize(topic))
	router.AddConsumerHandler(group, topic, sub, func(m *message.Message) error {
		mu.Lock()
		effects[m.UUID]++
		mu.Unlock()
		return nil
	})
	runDone := make(chan error, 1)
	go func() { runDone <- router.Run(ctx) }()
	<-router.Running()
	t.Cleanup(func() { _ = router.Close(); <-runDone })
	handled := func() int { mu.Lock(); defer mu.Unlock(); return len(effects) }

	// The relay; MaxAttempts 1: a counted attempt would park a row.
	cfg := fastRelay()
	cfg.MaxAttempts = 1
	e.start(relayTr.Publisher(), cfg)
	for i := 0; i < 300; i += 50 {
		e.add(orders(i, 50)...)
	}
	require.Eventually(t, func() bool { return handled() >= 100 }, 30*time.Second, 5*time.Millisecond)

	px.cut() // mid-drain and mid-consumption
	for i := 300; i < 500; i += 50 {
		e.add(orders(i, 50)...)
	}
	time.Sleep(outage) // the fault itself: nothing to poll for
	require.Zero(t, e.stats().Failed, "an outage uses up no attempt")
	duringOutage := handled()
	px.restore()

	require.Eventually(t, func() bool { return handled() == 500 }, 60*time.Second, 10*time.Millisecond, "relay and consumer resume by themselves")
	require.Eventually(t, func() bool { return e.stats().Published == 500 }, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	onWire := 0
	for id, n := range effects {
		require.Equal(t, 1, n, "event %s handled twice", id)
	}
	for _, n := range wire {
		onWire += n
	}
	testenv.Figure(t, "outage %s (%d handled before it ended): committed %d / delivered %d / duplicates-on-wire %d / effects %d",
		outage, duringOutage, 500, len(wire), onWire-len(wire), len(effects))
	require.Zero(t, e.stats().Failed)
}
