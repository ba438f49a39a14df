package middleware_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
)

func newDedup(t testing.TB, store middleware.InboxStore, inTx bool) *middleware.Deduplicate {
	t.Helper()
	d, err := middleware.NewDeduplicate(store, middleware.DeduplicateConfig{InTx: inTx, Logger: discard})
	require.NoError(t, err)
	return d
}

func TestDeduplicate(t *testing.T) {
	t.Parallel()

	t.Run("SameEventThreeTimesRunsOnce", func(t *testing.T) {
		t.Parallel()
		reg := newRegistry(t)
		tr := newMemory(t)
		store, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
		require.NoError(t, err)
		d := newDedup(t, store, false)
		calls, inc := counter()
		topic := testenv.Name(t, "orders")
		sub, err := tr.Subscriber("g")
		require.NoError(t, err)
		runRouter(t, sub, "h", topic, func(*message.Message) error { inc(); return nil }, d.Middleware)
		in := newEvent(t, reg, "o-1")
		other := newEvent(t, reg, "o-2")
		require.NoError(t, tr.Publisher().Publish(topic, in, in.Copy(), in.Copy(), other))
		require.Eventually(t, func() bool { return d.Duplicates() == 2 && calls() == 2 }, 10*time.Second, 5*time.Millisecond)
		require.Equal(t, 2, store.Len())
	})

	t.Run("FailedAttemptIsNotRecorded", func(t *testing.T) {
		t.Parallel()
		reg := newRegistry(t)
		tr := newMemory(t)
		store, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
		require.NoError(t, err)
		d := newDedup(t, store, false)
		calls, inc := counter()
		topic := testenv.Name(t, "orders")
		sub, err := tr.Subscriber("g")
		require.NoError(t, err)
		runRouter(t, sub, "h", topic, func(*message.Message) error {
			inc()
			if calls() < 3 {
				return errBoom // nacked: the transport redelivers
			}
			return nil
		}, d.Middleware)
		in := newEvent(t, reg, "o-1")
		require.NoError(t, tr.Publisher().Publish(topic, in))
		require.Eventually(t, func() bool { return store.Len() == 1 }, 10*time.Second, 5*time.Millisecond)
		require.Equal(t, 3, calls(), "failed twice, then succeeded: every failure was retried")
		require.Zero(t, d.Duplicates())
	})

	t.Run("ConcurrentDeliveriesRunTheHandlerOnce", func(t *testing.T) {
		t.Parallel()
		reg := newRegistry(t)
		store, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
		require.NoError(t, err)
		d := newDedup(t, store, false)
		topic := testenv.Name(t, "orders")
		var mu sync.Mutex
		running, maxRunning, calls := 0, 0, 0
		h := func(*message.Message) error {
			mu.Lock()
			running++
			calls++
			maxRunning = max(maxRunning, running)
			mu.Unlock()
			time.Sleep(100 * time.Millisecond)
			mu.Lock()
			running--
			mu.Unlock()
			return nil
		}
		// Two instances of one handler, each with its own transport: the
		// same event reaches both at once.
		in := newEvent(t, reg, "o-1")
		for range 2 {
			tr := newMemory(t)
			sub, err := tr.Subscriber("g")
			require.NoError(t, err)
			runRouter(t, sub, "h", topic, h, d.Middleware)
			require.NoError(t, tr.Publisher().Publish(topic, in.Copy()))
		}
		require.Eventually(t, func() bool { return d.Duplicates() == 1 }, 10*time.Second, 5*time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, 1, calls)
		require.Equal(t, 1, maxRunning)
	})

	t.Run("InTxNeedsASQLStore", func(t *testing.T) {
		t.Parallel()
		store, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
		require.NoError(t, err)
		_, err = middleware.NewDeduplicate(store, middleware.DeduplicateConfig{InTx: true})
		require.ErrorContains(t, err, "InTx")
		_, err = middleware.NewDeduplicate(nil, middleware.DeduplicateConfig{})
		require.Error(t, err)
	})
}

// TestDeduplicateInTx checks the exactly-once effect on each SQL store: the
// handler's write, its inbox row roll back together on failure and commit
// together on success, and a redelivery does not run the handler again.
func TestDeduplicateInTx(t *testing.T) {
	t.Parallel()
	for _, b := range sqlBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			reg := newRegistry(t)
			tr := newMemory(t)
			inbox, db := newSQLInbox(t, b, middleware.InboxConfig{})
			biz := createTable(t, db, "CREATE TABLE %s (order_id VARCHAR(64) NOT NULL, attempt INTEGER NOT NULL)")
			d := newDedup(t, inbox, true)
			retry := fastRetry(t, middleware.RetryConfig{MaxAttempts: 3})
			topic := testenv.Name(t, "orders")
			calls, inc := counter()
			sub, err := tr.Subscriber("g")
			require.NoError(t, err)
			runRouter(t, sub, "inventory.reserve", topic, func(msg *message.Message) error {
				inc()
				ctx := msg.Context()
				tx, ok := middleware.TxFromContext(ctx)
				if !ok {
					return errors.New("no tx in context")
				}
				attempt := middleware.AttemptFromContext(ctx)
				if _, err := tx.ExecContext(ctx, b.bind("INSERT INTO "+biz+" (order_id, attempt) VALUES (?, ?)"), msg.UUID, attempt); err != nil {
					return err
				}
				if attempt == 1 {
					return errBoom // after writing: the write must roll back
				}
				return nil
			}, retry.Middleware, d.Middleware)

			in := newEvent(t, reg, "o-1")
			require.NoError(t, tr.Publisher().Publish(topic, in))
			key := middleware.InboxKey{Handler: "inventory.reserve", EventID: in.UUID}
			require.Eventually(t, func() bool { return contains(t, inbox, key) }, 10*time.Second, 5*time.Millisecond)

			require.NoError(t, tr.Publisher().Publish(topic, in.Copy(), in.Copy()))
			require.Eventually(t, func() bool { return d.Duplicates() == 2 }, 10*time.Second, 5*time.Millisecond)
			require.Equal(t, 2, calls(), "one failed attempt, one success, no run for the duplicates")

			rows, err := db.QueryContext(context.Background(), "SELECT order_id, attempt FROM "+biz)
			require.NoError(t, err)
			defer rows.Close()
			var got []int
			for rows.Next() {
				var id string
				var attempt int
				require.NoError(t, rows.Scan(&id, &attempt))
				require.Equal(t, in.UUID, id)
				got = append(got, attempt)
			}
			require.NoError(t, rows.Err())
			require.Equal(t, []int{2}, got, "the failed attempt's write was rolled back with its inbox row")
			var n int
			require.NoError(t, db.QueryRow(b.bind("SELECT COUNT(*) FROM "+inbox.Table()+" WHERE handler = ? AND event_id = ?"), key.Handler, key.EventID).Scan(&n))
			require.Equal(t, 1, n)
		})
	}
}

func TestTxFromContext(t *testing.T) {
	t.Parallel()
	_, ok := middleware.TxFromContext(context.Background())
	require.False(t, ok)
	_, ok = middleware.TxFromContext(middleware.ContextWithTx(context.Background(), nil))
	require.False(t, ok)
	tx := &sql.Tx{}
	got, ok := middleware.TxFromContext(middleware.ContextWithTx(context.Background(), tx))
	require.True(t, ok)
	require.Same(t, tx, got)
}

func TestPurger(t *testing.T) {
	t.Parallel()
	store, err := middleware.NewMemoryInbox(middleware.InboxConfig{Retention: time.Millisecond})
	require.NoError(t, err)
	ctx := context.Background()
	for i := range 25 {
		c, err := store.Claim(ctx, middleware.InboxKey{Handler: "h", EventID: string(rune('a' + i))})
		require.NoError(t, err)
		require.NoError(t, c.Commit(ctx))
	}
	time.Sleep(5 * time.Millisecond)

	p, err := middleware.NewPurger(store, middleware.PurgerConfig{BatchSize: 10, MaxBatches: 2, Logger: discard})
	require.NoError(t, err)
	n, err := p.PurgeOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(20), n, "a round is bounded by MaxBatches × BatchSize")
	require.Equal(t, 5, store.Len())

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	p2, err := middleware.NewPurger(store, middleware.PurgerConfig{Interval: 10 * time.Millisecond, Logger: discard})
	require.NoError(t, err)
	go func() { done <- p2.Run(runCtx) }()
	require.Eventually(t, func() bool { return store.Len() == 0 }, 5*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, int64(5), p2.Purged())

	_, err = middleware.NewPurger(store, middleware.PurgerConfig{BatchSize: -1})
	require.ErrorContains(t, err, "BatchSize")
	_, err = middleware.NewPurger(nil, middleware.PurgerConfig{})
	require.Error(t, err)
}
