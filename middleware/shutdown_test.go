package middleware_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

// TestHandlerThatSucceedsDuringCloseIsNotRunAgain: a handler (no InTx, a
// PostgreSQL inbox) that returns nil while router.Close is in progress has
// its inbox row committed and its message acked, so the restarted consumer
// does not run it again. (The inbox transaction was bound to the message
// context, which Close cancels: the commit failed, the message was nacked
// and its effect happened twice after every graceful restart.)
func TestHandlerThatSucceedsDuringCloseIsNotRunAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inbox, _ := newSQLInbox(t, sqlBackends[0], middleware.InboxConfig{})
	topic := testenv.Name(t, "close")
	t.Cleanup(func() { deleteAMQP(t, [][2]string{{topic, "closing"}}) })
	reg := newRegistry(t)

	var effects atomic.Int64
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	start := func() (*message.Router, *transports.Transport) {
		tr, err := transports.Open(ctx, testenv.AMQPURL())
		if err != nil {
			testenv.Unavailable(t, "RabbitMQ", err)
		}
		chain, err := middleware.Default(middleware.DefaultConfig{Publisher: tr.Publisher(), Subscribers: tr.Subscriber,
			Inbox: inbox, Logger: discard})
		require.NoError(t, err)
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		require.NoError(t, err)
		router.AddMiddleware(chain.Middlewares()...)
		proc, err := cqrs.NewProcessor(router, tr.Subscriber, cqrs.ProcessorConfig{Registry: reg, DeadLetter: tr.Publisher(),
			Topic: func(string) string { return topic }})
		require.NoError(t, err)
		require.NoError(t, proc.AddHandlers(cqrs.NewHandler("closing", func(ctx context.Context, e *OrderPlaced) error {
			effects.Add(1)
			once.Do(func() { entered <- struct{}{} })
			<-release
			return nil
		})))
		startRouter(t, router)
		return router, tr
	}

	router, tr := start()
	bus, err := cqrs.NewBus(tr.Publisher(), cqrs.BusConfig{Registry: reg, Topic: func(string) string { return topic }})
	require.NoError(t, err)
	require.NoError(t, bus.Publish(ctx, OrderPlaced{OrderID: "o-1"}))
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("handler not called")
	}
	closed := make(chan error, 1)
	go func() { closed <- router.Close() }()
	time.Sleep(200 * time.Millisecond) // Close has begun: the message context is cancelled
	close(release)                     // the handler succeeds while the router closes
	require.NoError(t, <-closed)
	require.NoError(t, tr.Close())
	require.EqualValues(t, 1, effects.Load())

	router, tr = start()
	defer tr.Close()
	defer router.Close()
	time.Sleep(3 * time.Second) // a redelivery would arrive at once
	require.EqualValues(t, 1, effects.Load(), "a handler that succeeded during a graceful shutdown must not run again")
}
