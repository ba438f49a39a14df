package middleware_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
)

func memoryInbox(t testing.TB, retention time.Duration) *middleware.MemoryInbox {
	t.Helper()
	s, err := middleware.NewMemoryInbox(middleware.InboxConfig{Retention: retention})
	require.NoError(t, err)
	return s
}

func testChain(t testing.TB, pub message.Publisher, inbox middleware.InboxStore, inTx bool) *middleware.Chain {
	t.Helper()
	chain, err := middleware.Default(middleware.DefaultConfig{
		Publisher:    pub,
		Inbox:        inbox,
		InTx:         inTx,
		Retry:        middleware.RetryConfig{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond},
		DelayedRetry: fastDelays,
		Timeout:      5 * time.Second,
		Logger:       discard,
	})
	require.NoError(t, err)
	return chain
}

func TestDefaultValidation(t *testing.T) {
	t.Parallel()
	pub := newMemory(t).Publisher()
	inbox := memoryInbox(t, 0)
	for _, tc := range []struct {
		cfg  middleware.DefaultConfig
		want string
	}{
		{middleware.DefaultConfig{Inbox: inbox}, "Publisher"},
		{middleware.DefaultConfig{Publisher: pub}, "Inbox"},
		{middleware.DefaultConfig{Publisher: pub, Inbox: inbox, Timeout: -2}, "Timeout"},
		{middleware.DefaultConfig{Publisher: pub, Inbox: inbox, RedeliveryMargin: -2}, "RedeliveryMargin"},
		{middleware.DefaultConfig{Publisher: pub, Inbox: inbox, Retry: middleware.RetryConfig{Multiplier: 0.1}}, "Multiplier"},
		{middleware.DefaultConfig{Publisher: pub, Inbox: inbox, InTx: true}, "InTx"},
		{middleware.DefaultConfig{Publisher: &failingPublisher{}, Inbox: inbox}, "cannot delay messages"},
		{middleware.DefaultConfig{Publisher: pub, Inbox: inbox, DelayedRetry: middleware.DelayedRetryConfig{Levels: []time.Duration{}}}, "Levels is empty"},
		{middleware.DefaultConfig{Publisher: pub, Inbox: inbox, DelayedRetry: middleware.DelayedRetryConfig{Levels: []time.Duration{-time.Second}}}, "must be positive"},
		{middleware.DefaultConfig{Publisher: pub, Inbox: inbox, DelayedRetry: middleware.DelayedRetryConfig{Levels: []time.Duration{48 * time.Hour}}}, "longer than MaxDelay"},
		{middleware.DefaultConfig{Publisher: pub, Inbox: inbox, DelayedRetry: middleware.DelayedRetryConfig{
			Levels: []time.Duration{20 * time.Second, 10 * time.Second}}}, "Levels must increase"},
		// An inbox that forgets after 10 minutes, against a one-hour margin.
		{middleware.DefaultConfig{Publisher: pub, Inbox: memoryInbox(t, 10*time.Minute)}, "inbox retention 10m0s is shorter than the retry horizon"},
		// The retry policy alone outlasts the inbox.
		{middleware.DefaultConfig{Publisher: pub, Inbox: memoryInbox(t, time.Minute), RedeliveryMargin: -1,
			Retry: middleware.RetryConfig{MaxAttempts: 10, MaxInterval: time.Minute, MaxElapsed: -1}}, "raise InboxConfig.Retention"},
	} {
		_, err := middleware.Default(tc.cfg)
		require.ErrorContains(t, err, tc.want)
	}
	// Four rounds of immediate retries (under 2 s each) and a
	// minute of delays.
	chain, err := middleware.Default(middleware.DefaultConfig{Publisher: pub, Inbox: memoryInbox(t, 70*time.Second), RedeliveryMargin: -1, Timeout: -1})
	require.NoError(t, err, "a retention just over the horizon is accepted")
	require.Len(t, chain.Middlewares(), 8)
	_, err = middleware.Default(middleware.DefaultConfig{Publisher: pub, Inbox: memoryInbox(t, 65*time.Second), RedeliveryMargin: -1, Timeout: -1})
	require.ErrorContains(t, err, "shorter than the retry horizon", "the delayed rounds count")
	chain, err = middleware.Default(middleware.DefaultConfig{Publisher: &failingPublisher{}, Inbox: inbox, DelayedRetry: middleware.DelayedRetryConfig{Disabled: true}})
	require.NoError(t, err, "a publisher that cannot delay is fine with delayed retries off")
	require.Len(t, chain.Middlewares(), 8)
}

// TestDefaultChain runs the whole chain with typed handlers on the memory
// transport.
func TestDefaultChain(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	tr := newMemory(t)
	inbox := memoryInbox(t, 0)
	chain := testChain(t, tr.Publisher(), inbox, false)
	r, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	r.AddMiddleware(chain.Middlewares()...)
	proc, err := cqrs.NewProcessor(r, tr.Subscriber, cqrs.ProcessorConfig{DeadLetter: tr.Publisher(), Registry: reg})
	require.NoError(t, err)
	runs := map[string]int{}
	var attempts []int
	require.NoError(t, proc.AddHandlers(cqrs.NewHandler("inventory.reserve", func(ctx context.Context, e *OrderPlaced) error {
		runs[e.OrderID]++ // one message at a time on the memory transport
		switch e.OrderID {
		case "flaky":
			attempts = append(attempts, middleware.AttemptFromContext(ctx))
			if runs[e.OrderID] < 3 {
				return errBoom
			}
		case "doomed":
			return errBoom
		case "panic":
			var m map[string]int
			m["x"]++
		}
		return nil
	})))
	startRouter(t, r)
	dlq := collect(t, tr.Subscriber, "probe", "orders.order_placed.dlq")

	flaky, doomed, panics, ok := newEvent(t, reg, "flaky"), newEvent(t, reg, "doomed"), newEvent(t, reg, "panic"), newEvent(t, reg, "ok")
	require.NoError(t, tr.Publisher().Publish("orders.order_placed", flaky, flaky.Copy(), doomed, panics, ok, ok.Copy(), ok.Copy()))

	got := dlq.wait(t, 2)
	d := requireDeadLetter(t, doomed, got[0], "orders.order_placed", "inventory.reserve", middleware.ReasonRetriesExhausted, 3)
	require.Equal(t, 1, d.DelayedAttempts, "its delayed round is in the dead letter")
	p := requireDeadLetter(t, panics, got[1], "orders.order_placed", "inventory.reserve", middleware.ReasonPanic, 3)
	require.Contains(t, p.Error, "assignment to entry in nil map")
	require.Eventually(t, func() bool { return chain.Duplicates() == 3 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, r.Close())

	require.Equal(t, 3, runs["flaky"], "failed twice, succeeded once; the duplicate did not run")
	require.Equal(t, []int{1, 2, 3}, attempts)
	require.Equal(t, 1, runs["ok"])
	require.Equal(t, 6, runs["doomed"], "three immediate attempts, then the same after its delayed round")
	require.Equal(t, 2, inbox.Len(), "flaky and ok recorded, once each; failures never")
	require.Equal(t, int64(2), chain.DeadLettered())
}

// TestDefaultShutdownDuringRetry stops the router while a message waits for
// its retry: it is nacked, not dead-lettered, and handled after a restart.
func TestDefaultShutdownDuringRetry(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	tr := newMemory(t)
	inbox := memoryInbox(t, 0)
	chain, err := middleware.Default(middleware.DefaultConfig{
		Publisher: tr.Publisher(),
		Inbox:     inbox,
		Retry:     middleware.RetryConfig{MaxAttempts: 3, InitialInterval: time.Hour, MaxInterval: time.Hour, MaxElapsed: -1},
		Logger:    discard,
	})
	require.NoError(t, err)
	topic := testenv.Name(t, "orders")
	dlq := collect(t, tr.Subscriber, "probe", topic+".dlq")

	failed := make(chan struct{}, 1)
	newRouter := func(h message.NoPublishHandlerFunc) *message.Router {
		r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		require.NoError(t, err)
		r.AddMiddleware(chain.Middlewares()...)
		sub, err := tr.Subscriber("g")
		require.NoError(t, err)
		r.AddConsumerHandler("h", topic, sub, h)
		startRouter(t, r)
		return r
	}
	r := newRouter(func(*message.Message) error {
		select {
		case failed <- struct{}{}:
		default:
		}
		return errBoom
	})
	in := newEvent(t, reg, "o-1")
	require.NoError(t, tr.Publisher().Publish(topic, in))
	<-failed
	start := time.Now()
	require.NoError(t, r.Close())
	require.Less(t, time.Since(start), 5*time.Second, "Retry stops waiting when the router closes")

	handled := make(chan string, 1)
	newRouter(func(msg *message.Message) error {
		handled <- msg.UUID
		return nil
	})
	select {
	case id := <-handled:
		require.Equal(t, in.UUID, id, "the interrupted message was redelivered")
	case <-time.After(10 * time.Second):
		t.Fatal("message not redelivered after restart")
	}
	require.Zero(t, chain.DeadLettered())
	require.Empty(t, dlq.all())
}
