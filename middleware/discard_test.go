package middleware_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
)

// TestDiscardDLQ deletes the dead letters that match and keeps the others,
// publishing nothing to the original topic.
func TestDiscardDLQ(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	tr := newMemory(t)
	topic := testenv.Name(t, "orders")
	dlqTopic := middleware.DeadLetterTopic(topic)

	pq := newPoison(t, tr.Publisher(), middleware.PoisonQueueConfig{})
	r, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	r.AddMiddleware(pq.Middleware)
	for _, h := range []string{"inventory", "billing"} {
		sub, err := tr.Subscriber(h)
		require.NoError(t, err)
		r.AddConsumerHandler(h, topic, sub, func(*message.Message) error { return errBoom })
	}
	startRouter(t, r)
	require.NoError(t, tr.Publisher().Publish(topic, newEvent(t, reg, "o-1"), newEvent(t, reg, "o-2"), newEvent(t, reg, "o-3")))
	require.Eventually(t, func() bool { return pq.DeadLettered() == 6 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, r.Close())

	probe := collect(t, tr.Subscriber, "probe", topic)
	cfg := middleware.ReplayConfig{Topic: dlqTopic, IdleTimeout: 200 * time.Millisecond, Logger: discard}
	ctx := context.Background()

	one := cfg
	one.Handler = "billing"
	one.Limit = 1
	res, err := middleware.DiscardDLQ(ctx, tr.Subscriber, tr.Publisher(), one)
	require.NoError(t, err)
	require.Equal(t, 1, res.Replayed, "Limit deletes one")

	billing := cfg
	billing.Handler = "billing"
	res, err = middleware.DiscardDLQ(ctx, tr.Subscriber, tr.Publisher(), billing)
	require.NoError(t, err)
	require.Equal(t, 2, res.Replayed, "the other two of billing")
	require.Equal(t, 3, res.Kept, "inventory's three are kept")

	left, _, err := middleware.BrowseDLQ(ctx, tr.Browse, cfg)
	require.NoError(t, err)
	require.Len(t, left, 3)
	for _, dl := range left {
		require.Equal(t, "inventory", dl.Handler)
	}
	time.Sleep(100 * time.Millisecond) // nothing more may arrive on the original topic
	require.Len(t, probe.all(), 3, "the original topic has its three events (a new group sees history in memory) and no deleted dead letter")

	_, err = middleware.DiscardDLQ(ctx, tr.Subscriber, tr.Publisher(), middleware.ReplayConfig{})
	require.Error(t, err, "Topic is required")
}
