package forwarder_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/forwarder"
)

// TestFailedPagesAndBulkRepairs parks rows with two errors, pages through
// them with their payloads, counts, requeues and deletes them by filter, on
// every backend; and reads which relay is active, from the database and
// from the relay itself.
func TestFailedPagesAndBulkRepairs(t *testing.T) {
	t.Parallel()
	for _, b := range allBackends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			ctx := context.Background()

			a, err := e.ob.ActiveRelay(ctx)
			require.NoError(t, err)
			require.False(t, a.Active, "no relay runs yet")

			broker := &memBroker{}
			broker.setFail(func(_ string, m *message.Message) error {
				switch seq := decodeSeq(t, m); {
				case seq%3 == 0:
					return rejectedErr{"too large: 100% of it_"}
				case seq%3 == 1:
					return rejectedErr{"unroutable"}
				}
				return nil
			})
			e.add(orders(0, 12)...) // 4 too large, 4 unroutable, 4 published
			cfg := fastRelay()
			cfg.MaxAttempts = 1
			relay, err := forwarder.NewRelay(e.ob, broker, cfg)
			require.NoError(t, err)
			rctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- relay.Run(rctx) }()
			t.Cleanup(func() {
				stop()
				<-done
			})
			require.Eventually(t, func() bool { st := e.stats(); return st.Failed == 8 && st.Published == 4 }, 10*time.Second, 5*time.Millisecond)

			require.Eventually(t, func() bool { return relay.State().Active }, 10*time.Second, 5*time.Millisecond)
			st := relay.State()
			require.True(t, st.Running)
			require.NotZero(t, st.LastBatch.Rows)
			require.WithinDuration(t, time.Now(), st.LastBatch.At, time.Minute)
			a, err = e.ob.ActiveRelay(ctx)
			require.NoError(t, err)
			require.True(t, a.Active, "the database shows the lock held")
			require.NotEmpty(t, a.Holder)

			n, err := e.ob.CountFailed(ctx, forwarder.FailedFilter{})
			require.NoError(t, err)
			require.EqualValues(t, 8, n)
			n, err = e.ob.CountFailed(ctx, forwarder.FailedFilter{ErrorContains: "100% of it_"})
			require.NoError(t, err)
			require.EqualValues(t, 4, n, "LIKE wildcards in the text match themselves")
			n, err = e.ob.CountFailed(ctx, forwarder.FailedFilter{ErrorContains: "%"})
			require.NoError(t, err)
			require.EqualValues(t, 4, n)
			n, err = e.ob.CountFailed(ctx, forwarder.FailedFilter{Topic: "test.order_created", Name: "test.order_created"})
			require.NoError(t, err)
			require.EqualValues(t, 8, n)
			n, err = e.ob.CountFailed(ctx, forwarder.FailedFilter{Topic: "nope"})
			require.NoError(t, err)
			require.Zero(t, n)

			// Pages of 3, in offset order, with payloads.
			var seen []forwarder.FailedRow
			var after int64
			for {
				page, err := e.ob.FailedPage(ctx, forwarder.FailedFilter{}, after, 3)
				require.NoError(t, err)
				require.LessOrEqual(t, len(page), 3)
				if len(page) == 0 {
					break
				}
				seen = append(seen, page...)
				after = page[len(page)-1].Offset
			}
			require.Len(t, seen, 8)
			for i, r := range seen {
				if i > 0 {
					require.Greater(t, r.Offset, seen[i-1].Offset)
				}
				var o OrderCreated
				require.NoError(t, json.Unmarshal(r.Payload, &o), "payload %q", r.Payload)
				require.NotEqual(t, 2, o.Seq%3, "a published row is not failed")
				require.Equal(t, "test.order_created", r.Metadata["name"])
				require.Equal(t, 1, r.Attempts)
				require.Empty(t, r.PayloadError)
			}
			_, err = e.ob.FailedPage(ctx, forwarder.FailedFilter{}, 0, 0)
			require.Error(t, err)
			topics, err := e.ob.Topics(ctx, 0)
			require.NoError(t, err)
			require.Equal(t, []string{"test.order_created"}, topics)

			broker.setFail(nil)
			one := seen[0].EventID
			n, err = e.ob.RequeueFailed(ctx, forwarder.FailedFilter{EventIDs: []string{one, "unknown"}})
			require.NoError(t, err)
			require.EqualValues(t, 1, n)
			n, err = e.ob.DeleteFailed(ctx, forwarder.FailedFilter{ErrorContains: "unroutable"})
			require.NoError(t, err)
			require.EqualValues(t, 4, n)
			n, err = e.ob.DeleteFailed(ctx, forwarder.FailedFilter{EventIDs: []string{one}})
			require.NoError(t, err)
			require.LessOrEqual(t, n, int64(1), "at most the row, if the relay has not published it yet")
			require.Eventually(t, func() bool { st := e.stats(); return st.Failed == 3 && st.Pending == 0 }, 10*time.Second, 5*time.Millisecond)
			n, err = e.ob.RequeueFailed(ctx, forwarder.FailedFilter{})
			require.NoError(t, err)
			require.EqualValues(t, 3, n)
			require.Eventually(t, func() bool { st := e.stats(); return st.Failed == 0 && st.Pending == 0 }, 10*time.Second, 5*time.Millisecond)

			stop()
			require.NoError(t, <-done)
			done <- nil // for the cleanup
			require.False(t, relay.State().Running)
			require.Eventually(t, func() bool {
				a, err = e.ob.ActiveRelay(ctx)
				require.NoError(t, err)
				return !a.Active
			}, 10*time.Second, 10*time.Millisecond, "a stopped relay frees the lock")
		})
	}
}

// FailedFilter.Limit bounds the bulk repairs, oldest first, also across
// their batches of 500 statements.
func TestBulkRepairsStopAtLimit(t *testing.T) {
	t.Parallel()
	for _, b := range allBackends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			ctx := context.Background()
			e.add(orders(0, 505)...)
			table := `"` + e.ob.Table() + `"`
			if b == mysqlB {
				table = "`" + e.ob.Table() + "`"
			}
			require.NoError(t, e.exec(ctx, `UPDATE `+table+` SET status = 2`))
			oldest, err := e.ob.FailedPage(ctx, forwarder.FailedFilter{}, 0, 2)
			require.NoError(t, err)

			n, err := e.ob.RequeueFailed(ctx, forwarder.FailedFilter{Limit: 2})
			require.NoError(t, err)
			require.EqualValues(t, 2, n)
			left, err := e.ob.FailedPage(ctx, forwarder.FailedFilter{}, 0, 1)
			require.NoError(t, err)
			require.Greater(t, left[0].Offset, oldest[1].Offset, "the oldest went first")
			n, err = e.ob.DeleteFailed(ctx, forwarder.FailedFilter{Limit: 501})
			require.NoError(t, err)
			require.EqualValues(t, 501, n, "across two batches")
			st := e.stats()
			require.EqualValues(t, 2, st.Failed)
			require.EqualValues(t, 2, st.Pending)
		})
	}
}
