package middleware_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
)

func TestReplayDLQ(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	tr := newMemory(t)
	topic := testenv.Name(t, "orders")
	dlqTopic := topic + ".dlq"

	// Two handlers of one topic fail every event: each event is
	// dead-lettered twice, once per handler.
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
	e1, e2 := newEvent(t, reg, "o-1"), newEvent(t, reg, "o-2")
	require.NoError(t, tr.Publisher().Publish(topic, e1, e2))
	require.Eventually(t, func() bool { return pq.DeadLettered() == 4 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, r.Close())
	// Something that is not a dead letter lands in the topic too.
	require.NoError(t, tr.Publisher().Publish(dlqTopic, message.NewMessage("garbage", []byte("x"))))

	cfg := func(c middleware.ReplayConfig) middleware.ReplayConfig {
		c.Topic = dlqTopic
		c.IdleTimeout = 200 * time.Millisecond
		c.Logger = discard
		return c
	}
	ctx := context.Background()

	listed, err := middleware.ListDLQ(ctx, tr.Subscriber, tr.Publisher(), cfg(middleware.ReplayConfig{}))
	require.NoError(t, err)
	require.Len(t, listed, 4)
	handlers := map[string]int{}
	for _, dl := range listed {
		handlers[dl.Handler]++
		require.Equal(t, topic, dl.OriginalTopic)
		require.Equal(t, middleware.ReasonFailed, dl.Reason)
	}
	require.Equal(t, map[string]int{"inventory": 2, "billing": 2}, handlers)

	t.Run("FiltersByAge", func(t *testing.T) {
		res, err := middleware.ReplayDLQ(ctx, tr.Subscriber, tr.Publisher(), cfg(middleware.ReplayConfig{OlderThan: time.Hour}))
		require.NoError(t, err)
		require.Zero(t, res.Replayed)
		require.Equal(t, 5, res.Kept)
		require.Equal(t, 1, res.Invalid)
	})

	probe := collect(t, tr.Subscriber, "probe", topic)
	replayed := func() []*message.Message {
		var out []*message.Message
		for _, m := range probe.all() {
			if m.Metadata.Get(middleware.KeyReplays) != "" {
				out = append(out, m)
			}
		}
		return out
	}

	t.Run("ReplaysOneHandlerWithOriginalIDsAndKeepsTheRest", func(t *testing.T) {
		res, err := middleware.ReplayDLQ(ctx, tr.Subscriber, tr.Publisher(), cfg(middleware.ReplayConfig{Handler: "inventory", NewerThan: time.Hour}))
		require.NoError(t, err)
		require.Equal(t, middleware.ReplayResult{Scanned: 5, Replayed: 2, Kept: 3, Invalid: 1}, res)
		require.Eventually(t, func() bool { return len(replayed()) == 2 }, 5*time.Second, 5*time.Millisecond)
		got := replayed()
		ids := []string{got[0].UUID, got[1].UUID}
		sort.Strings(ids)
		want := []string{e1.UUID, e2.UUID}
		sort.Strings(want)
		require.Equal(t, want, ids, "replayed with the original event ids")
		for _, m := range got {
			orig := e1
			if m.UUID == e2.UUID {
				orig = e2
			}
			require.Equal(t, orig.Payload, m.Payload)
			for k, v := range orig.Metadata {
				require.Equal(t, v, m.Metadata.Get(k), k)
			}
			for _, k := range []string{middleware.KeyReason, middleware.KeyError, middleware.KeyAttempts, middleware.KeyOriginalTopic, middleware.KeyHandler, middleware.KeyFailedAt, "dlq_scan"} {
				require.Empty(t, m.Metadata.Get(k), k)
			}
			require.Equal(t, "1", m.Metadata.Get(middleware.KeyReplays))
		}

		left, err := middleware.ListDLQ(ctx, tr.Subscriber, tr.Publisher(), cfg(middleware.ReplayConfig{}))
		require.NoError(t, err)
		require.Len(t, left, 2)
		for _, dl := range left {
			require.Equal(t, "billing", dl.Handler)
		}
	})

	t.Run("Limit", func(t *testing.T) {
		res, err := middleware.ReplayDLQ(ctx, tr.Subscriber, tr.Publisher(), cfg(middleware.ReplayConfig{Reason: middleware.ReasonFailed, Limit: 1}))
		require.NoError(t, err)
		require.Equal(t, 1, res.Replayed)
		left, err := middleware.ListDLQ(ctx, tr.Subscriber, tr.Publisher(), cfg(middleware.ReplayConfig{Handler: "billing"}))
		require.NoError(t, err)
		require.Len(t, left, 1)
		garbage, err := middleware.ListDLQ(ctx, tr.Subscriber, tr.Publisher(), cfg(middleware.ReplayConfig{Filter: func(middleware.DeadLetter) bool { return false }}))
		require.NoError(t, err)
		require.Empty(t, garbage)
	})

	t.Run("Validation", func(t *testing.T) {
		for _, tc := range []struct {
			cfg   middleware.ReplayConfig
			field string
		}{
			{middleware.ReplayConfig{}, "Topic"},
			{middleware.ReplayConfig{Topic: "x", OlderThan: -1}, "OlderThan"},
			{middleware.ReplayConfig{Topic: "x", NewerThan: -1}, "NewerThan"},
			{middleware.ReplayConfig{Topic: "x", OlderThan: time.Hour, NewerThan: time.Minute}, "NewerThan"},
			{middleware.ReplayConfig{Topic: "x", Limit: -1}, "Limit"},
		} {
			_, err := middleware.ReplayDLQ(ctx, tr.Subscriber, tr.Publisher(), tc.cfg)
			require.ErrorContains(t, err, tc.field)
		}
	})
}

func TestReplayDLQPublishFailureLosesNothing(t *testing.T) {
	t.Parallel()
	tr := newMemory(t)
	topic := testenv.Name(t, "orders")
	dl := deadLetterMsg(validDeadLetterMetadata())
	dl.Metadata.Set(middleware.KeyOriginalTopic, topic)
	require.NoError(t, tr.Publisher().Publish(topic+".dlq", dl))
	broken := &failingPublisher{Publisher: tr.Publisher(), fails: 1}
	res, err := middleware.ReplayDLQ(context.Background(), tr.Subscriber, broken, middleware.ReplayConfig{Topic: topic + ".dlq", IdleTimeout: 200 * time.Millisecond, Logger: discard})
	require.ErrorIs(t, err, errBroker)
	require.Zero(t, res.Replayed)
	res, err = middleware.ReplayDLQ(context.Background(), tr.Subscriber, broken, middleware.ReplayConfig{Topic: topic + ".dlq", IdleTimeout: 200 * time.Millisecond, Logger: discard})
	require.NoError(t, err)
	require.Equal(t, 1, res.Replayed, "the nacked dead letter is still there")
}
