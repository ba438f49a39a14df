package transports_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports"
)

// TestDepth counts what a group has yet to receive, on every transport's
// real service: 0 for a topic nobody set up (which stays missing), the
// messages published, the same after browsing, and 0 once the group has
// received and acked them.
func TestDepth(t *testing.T) {
	t.Parallel()
	for _, s := range services() {
		t.Run(string(s.kind), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			rawURL := s.url(t)
			tr, err := transports.Open(ctx, rawURL)
			if err != nil && (s.kind == transports.KindPostgres || s.kind == transports.KindMySQL) {
				testenv.Unavailable(t, string(s.kind), err)
			}
			require.NoError(t, err)
			t.Cleanup(func() { _ = tr.Close() })
			probe := newProber(t, s.kind, rawURL)
			topic := testenv.Name(t, "depth")
			const group = "g"
			probe.cleanup(t, topic, group)

			n, err := tr.Depth(ctx, topic, group)
			require.NoError(t, err)
			require.Zero(t, n)
			probe.requireNothing(t, topic, group)
			_, err = tr.Depth(ctx, topic, "")
			require.ErrorIs(t, err, transports.ErrNoGroup)

			if s.kind != transports.KindMemory {
				setUp(t, tr, s.kind, topic, group)
			}
			const sent = 4
			for range sent {
				require.NoError(t, tr.Publisher().Publish(topic, message.NewMessage(watermill.NewUUID(), []byte("x"))))
			}
			require.Eventually(t, func() bool { // RabbitMQ counts a confirmed message a moment later
				n, err = tr.Depth(ctx, topic, group)
				require.NoError(t, err)
				return n == sent
			}, 10*time.Second, 20*time.Millisecond, "depth %d, want %d", n, sent)
			_, err = tr.Browse(ctx, topic, group, 0)
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				n, err = tr.Depth(ctx, topic, group)
				require.NoError(t, err)
				return n == sent
			}, 10*time.Second, 20*time.Millisecond, "browsing changed the depth to %d", n)

			sub, err := tr.Subscriber(group)
			require.NoError(t, err)
			defer sub.Close()
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			msgs, err := sub.Subscribe(sctx, topic)
			require.NoError(t, err)
			for range sent {
				select {
				case m := <-msgs:
					m.Ack()
				case <-time.After(30 * time.Second):
					t.Fatal("the group did not receive what was published")
				}
			}
			require.Eventually(t, func() bool {
				n, err = tr.Depth(ctx, topic, group)
				require.NoError(t, err)
				return n == 0
			}, 30*time.Second, 50*time.Millisecond, "depth %d after the group received everything", n)
		})
	}
}
