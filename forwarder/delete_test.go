package forwarder_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/forwarder"
)

// With DeletePublished the relay deletes what the broker confirmed instead
// of marking it: nothing published stays, failed rows do, and a requeued
// row is published and deleted in turn.
func TestRelay_DeletePublished(t *testing.T) {
	t.Parallel()
	for _, b := range allBackends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b, func(c *forwarder.OutboxConfig) { c.DeletePublished = true })
			ctx := context.Background()
			broker := &memBroker{}
			broker.setFail(func(_ string, m *message.Message) error {
				if decodeSeq(t, m) == 5 {
					return rejectedErr{"message too large"}
				}
				return nil
			})
			e.add(orders(0, 10)...)
			e.start(broker, fastRelay()) // MaxAttempts 3

			require.Eventually(t, func() bool {
				st := e.stats()
				return st.Failed == 1 && st.Pending == 0
			}, 10*time.Second, 5*time.Millisecond)
			st := e.stats()
			require.Zero(t, st.Published, "published rows are deleted, not kept")
			require.ElementsMatch(t, []int{0, 1, 2, 3, 4, 6, 7, 8, 9}, dedupe(broker.seqs(t)))

			failed, err := e.ob.Failed(ctx, 10)
			require.NoError(t, err)
			require.Len(t, failed, 1)
			broker.setFail(nil)
			n, err := e.ob.Requeue(ctx, failed[0].EventID)
			require.NoError(t, err)
			require.EqualValues(t, 1, n)
			require.Eventually(t, func() bool { return e.stats() == forwarder.Stats{} }, 10*time.Second, 5*time.Millisecond,
				"the requeued row is published and deleted: %+v", e.stats())
			require.ElementsMatch(t, seqRange(0, 10), dedupe(broker.seqs(t)))
		})
	}
}
