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

// TestBrowse reads what a group has yet to receive, on every transport's
// real service, twice, and then consumes it: browsing took, moved and
// changed nothing; a topic nobody set up is empty and stays missing.
func TestBrowse(t *testing.T) {
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
			topic := testenv.Name(t, "browse")
			const group = "g"
			probe.cleanup(t, topic, group)

			got, err := tr.Browse(ctx, topic, group, 0)
			require.NoError(t, err)
			require.Empty(t, got)
			probe.requireNothing(t, topic, group)

			if s.kind != transports.KindMemory {
				setUp(t, tr, s.kind, topic, group)
			}
			var sent []string
			for i := range 3 {
				m := message.NewMessage(watermill.NewUUID(), []byte{byte('a' + i)})
				m.Metadata.Set("n", string(rune('0'+i)))
				sent = append(sent, m.UUID)
				require.NoError(t, tr.Publisher().Publish(topic, m))
			}
			ids := func(msgs []*message.Message) []string {
				var out []string
				for _, m := range msgs {
					out = append(out, m.UUID)
				}
				return out
			}
			// On PostgreSQL a subscriber (and so Browse) reads only rows of
			// transactions below the snapshot xmin: while a transaction of
			// another test in the same database is open, the rows just
			// committed are held back. Wait until they can be received.
			require.Eventually(t, func() bool {
				all, err := tr.Browse(ctx, topic, group, 0)
				return err == nil && len(all) == len(sent)
			}, 30*time.Second, 20*time.Millisecond, "the published messages become browsable")
			for range 2 {
				all, err := tr.Browse(ctx, topic, group, 0)
				require.NoError(t, err)
				require.ElementsMatch(t, sent, ids(all))
				if s.kind != transports.KindKafka { // Kafka orders per partition only
					require.Equal(t, sent, ids(all), "oldest first")
				}
				two, err := tr.Browse(ctx, topic, group, 2)
				require.NoError(t, err)
				require.Len(t, two, 2)
			}

			sub, err := tr.Subscriber(group)
			require.NoError(t, err)
			defer sub.Close()
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			msgs, err := sub.Subscribe(sctx, topic)
			require.NoError(t, err)
			var received []string
			for len(received) < len(sent) {
				select {
				case m := <-msgs:
					m.Ack()
					received = append(received, m.UUID)
				case <-time.After(30 * time.Second):
					t.Fatalf("the group received %d of %d after browsing", len(received), len(sent))
				}
			}
			require.ElementsMatch(t, sent, received, "browsing took nothing")
		})
	}
}
