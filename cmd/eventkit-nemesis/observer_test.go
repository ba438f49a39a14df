package main

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/faultproxy"
	"github.com/b2131a45/eventkit/internal/testenv"
)

// TestObserverCountsOnAfterItsConnectionIsLost: the observer's
// connection is reset while it consumes, and its consumer is cancelled by
// the broker with the connection up; each time it consumes again and goes
// on counting. Found by a ten-minute run whose observer saw 599 of some
// 30,000 messages and never reconnected: it watched only the connection,
// and a forwarding goroutine could wait for good on a delivery nobody
// read any more.
func TestObserverCountsOnAfterItsConnectionIsLost(t *testing.T) {
	t.Parallel()
	broker, err := url.Parse(testenv.AMQPURL())
	require.NoError(t, err)
	direct, err := amqp.Dial(broker.String())
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { _ = direct.Close() })
	proxy, err := faultproxy.New(broker.Host)
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	through := *broker
	through.Host = proxy.Addr()

	topic := testenv.Name(t, "obs")
	o := newObserver([]string{through.String()}, []string{topic})
	// A classic queue: deleted and declared again at once below, a quorum
	// queue can still be on its way out (RabbitMQ deletes its replicas
	// in the background), which is not what this test is about.
	o.queueArgs = nil
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, o.declare(ctx))
	ch, err := direct.Channel()
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = ch.QueueDelete(o.queue(topic), false, false, false)
		_ = ch.ExchangeDelete(topic, false, false)
		_ = ch.Close()
	})
	done := make(chan struct{})
	go func() { defer close(done); o.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	publish := func(round int) {
		for i := range 2000 {
			require.NoError(t, ch.Publish(topic, "", false, false, amqp.Publishing{MessageId: fmt.Sprintf("m%d-%d", round, i)}))
		}
	}
	seen := func() int { d, _, _, _ := o.counts(); return d }
	publish(0)
	require.Eventually(t, func() bool { return seen() == 2000 }, 20*time.Second, 10*time.Millisecond)
	for round := 1; round <= 3; round++ {
		publish(round)
		proxy.Reset() // the observer's connection is cut while deliveries flow
		require.Eventually(t, func() bool { return seen() == 2000*(round+1) }, 30*time.Second, 10*time.Millisecond,
			"round %d: the observer stopped counting at %d", round, seen())
	}
	// The broker cancels the observer's consumer, the connection staying
	// up (its queue deleted and declared again, as a queue moving can):
	// the observer consumes again.
	_, err = ch.QueueDelete(o.queue(topic), false, false, false)
	require.NoError(t, err)
	require.NoError(t, o.declare(ctx))
	publish(4)
	require.Eventually(t, func() bool { return seen() == 2000*5 }, 30*time.Second, 10*time.Millisecond,
		"after its consumer was cancelled the observer stopped counting at %d", seen())
	_, _, _, reconnects := o.counts()
	require.GreaterOrEqual(t, reconnects, 4)
}
