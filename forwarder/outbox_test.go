package forwarder_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
)

func TestOutbox_CommitAndRollback(t *testing.T) {
	t.Parallel()
	for _, b := range append(allBackends, pgPq) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			ctx := context.Background()

			rolled := e.begin(ctx)
			require.NoError(t, e.ob.Add(ctx, rolled.raw, orders(1000, 3)...))
			require.NoError(t, rolled.rollback())

			e.add(orders(0, 2)...)
			bus := e.begin(ctx)
			require.NoError(t, e.ob.Bus(bus.raw).Publish(ctx, orders(2, 2)...))
			require.NoError(t, bus.commit())

			broker := &memBroker{}
			e.start(broker, fastRelay())
			broker.waitCount(t, 4, 10*time.Second)
			require.Eventually(t, func() bool { return e.stats().Published == 4 }, 5*time.Second, 10*time.Millisecond)
			require.Equal(t, []int{0, 1, 2, 3}, broker.seqs(t))

			st := e.stats()
			require.Zero(t, st.Pending)
			require.Zero(t, st.Failed)
			for _, p := range broker.messages() {
				require.Equal(t, "test.order_created", p.topic)
				require.Equal(t, "tests", p.msg.Metadata.Get(events.KeySource))
				require.Equal(t, p.msg.UUID, p.msg.Metadata.Get(events.KeyEventID))
			}
		})
	}
}

func TestOutboxConfig_Validation(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("sqlite", sqliteDSN(filepath.Join(t.TempDir(), "v.db")))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	reg := newRegistry(t)

	for _, name := range []string{"Outbox", "a-b", "x; DROP TABLE users", `x"y`, "x`y", "ünicode", "a b", strings.Repeat("a", 41)} {
		_, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Name: name})
		require.ErrorContains(t, err, "OutboxConfig.Name", "name %q", name)
	}
	for _, name := range []string{"", "outbox", "orders_2", strings.Repeat("a", 40)} {
		ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Name: name})
		require.NoError(t, err, "name %q", name)
		if name == "" {
			require.Equal(t, forwarder.OutboxNameDefault, ob.Name())
		}
		require.Equal(t, forwarder.SQLite, ob.Dialect(), "detected from the driver")
	}
	_, err = forwarder.NewOutbox(db, forwarder.OutboxConfig{})
	require.ErrorContains(t, err, "OutboxConfig.Registry")
	_, err = forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Dialect: forwarder.Dialect(9)})
	require.ErrorContains(t, err, "OutboxConfig.Dialect")
	_, err = forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, PurgeBatchSize: -1})
	require.ErrorContains(t, err, "OutboxConfig.PurgeBatchSize")
	_, err = forwarder.NewOutbox(nil, forwarder.OutboxConfig{Registry: reg})
	require.Error(t, err)

	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg})
	require.NoError(t, err)
	for field, cfg := range map[string]forwarder.RelayConfig{
		"BatchSize":       {BatchSize: 10001},
		"MaxAttempts":     {MaxAttempts: -1},
		"PollInterval":    {PollInterval: -time.Second},
		"MinPollInterval": {PollInterval: time.Second, MinPollInterval: 2 * time.Second},
		"MaxBackoff":      {RetryInterval: time.Second, MaxBackoff: time.Millisecond},
		"StopTimeout":     {StopTimeout: -1},
		"LeaseTTL":        {LeaseTTL: time.Second},
	} {
		_, err := forwarder.NewRelay(ob, &memBroker{}, cfg)
		require.ErrorContains(t, err, "RelayConfig."+field)
	}
	_, err = forwarder.NewRelay(ob, nil, forwarder.RelayConfig{})
	require.Error(t, err)
	_, err = forwarder.NewRelay(nil, &memBroker{}, forwarder.RelayConfig{})
	require.Error(t, err)
}

func TestOutbox_SetupIsIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	for _, b := range allBackends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b) // already set up once
			var wg sync.WaitGroup
			errs := make(chan error, 6)
			for range 6 {
				wg.Go(func() { errs <- e.ob.Setup(context.Background()) })
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			e.add(orders(0, 1)...)
			require.Equal(t, int64(1), e.stats().Pending)
		})
	}
}

func TestOutbox_AddRefusesWhatIsNotATransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgStd)
	ctx := context.Background()
	require.ErrorIs(t, e.ob.Add(ctx, e.db, orders(0, 1)...), forwarder.ErrNotTransaction)
	require.ErrorIs(t, e.ob.Add(ctx, nil, orders(0, 1)...), forwarder.ErrNotTransaction)
	require.ErrorIs(t, e.ob.Add(ctx, (*sql.Tx)(nil), orders(0, 1)...), forwarder.ErrNotTransaction)
	require.ErrorIs(t, e.ob.Add(ctx, "tx", orders(0, 1)...), forwarder.ErrNotTransaction)
	require.ErrorIs(t, e.ob.Bus(e.db).Publish(ctx, orders(0, 1)...), forwarder.ErrNotTransaction)

	// A wrapper of *sql.Tx (like sqlx.Tx) is a transaction; one of *sql.DB
	// (like sqlx.DB) is not.
	type wrappedDB struct{ *sql.DB }
	require.ErrorIs(t, e.ob.Add(ctx, wrappedDB{e.db}, orders(0, 1)...), forwarder.ErrNotTransaction)
	type wrappedTx struct{ *sql.Tx }
	wtx, err := e.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, e.ob.Add(ctx, wrappedTx{wtx}, orders(0, 1)...))
	require.NoError(t, wtx.Rollback())

	type Unregistered struct{}
	tx := e.begin(ctx)
	err = e.ob.Add(ctx, tx.raw, OrderCreated{Seq: 1}, Unregistered{})
	require.ErrorIs(t, err, events.ErrNotRegistered)
	require.NoError(t, tx.commit())
	require.Zero(t, e.stats().Pending, "nothing is written when one event is not registered")
}

func TestOutbox_PgxAndStdTransactions(t *testing.T) {
	t.Parallel()
	// One outbox on a *sql.DB takes a pgx.Tx, and one on a pgx pool takes a
	// *sql.Tx: Add writes in whatever transaction it is given.
	std := newEnv(t, pgStd)
	_, pool := openDB(t, pgPool)
	ctx := context.Background()

	ptx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, std.ob.Add(ctx, ptx, orders(0, 2)...))
	require.NoError(t, ptx.Commit(ctx))
	ptx, err = pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, std.ob.Bus(ptx).Publish(ctx, orders(100, 2)...))
	require.NoError(t, ptx.Rollback(ctx))

	pgxOb, err := forwarder.NewOutboxPgx(pool, forwarder.OutboxConfig{Registry: std.reg, Name: std.name})
	require.NoError(t, err)
	stx, err := std.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, pgxOb.Add(ctx, stx, orders(2, 1)...))
	require.NoError(t, stx.Commit())

	broker := &memBroker{}
	std.start(broker, fastRelay())
	broker.waitCount(t, 3, 10*time.Second)
	require.Equal(t, []int{0, 1, 2}, broker.seqs(t))
}

func TestOutbox_Inspection(t *testing.T) {
	t.Parallel()
	for _, b := range allBackends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b, func(c *forwarder.OutboxConfig) {
				c.Topic = func(name string) string { return "topic." + name }
			})
			ctx := context.Background()
			st := e.stats()
			require.Equal(t, forwarder.Stats{}, st)

			e.add(orders(0, 3)...)
			e.add(OrderShipped{ID: "x"})
			time.Sleep(30 * time.Millisecond)
			st = e.stats()
			require.Equal(t, int64(4), st.Pending)
			require.GreaterOrEqual(t, st.OldestPendingAge, 30*time.Millisecond)
			require.Less(t, st.OldestPendingAge, time.Minute)

			pending, err := e.ob.Pending(ctx, 3)
			require.NoError(t, err)
			require.Len(t, pending, 3, "limit")
			all, err := e.ob.Pending(ctx, 10)
			require.NoError(t, err)
			require.Len(t, all, 4)
			require.Equal(t, "test.order_created", all[0].Name)
			require.Equal(t, "topic.test.order_created", all[0].Topic)
			require.Equal(t, "test.order_shipped", all[3].Name)
			require.Zero(t, all[0].Attempts)
			require.Empty(t, all[0].LastError)
			require.WithinDuration(t, time.Now(), all[0].CreatedAt, time.Minute)
			_, err = e.ob.Pending(ctx, 0)
			require.Error(t, err)

			// The shipped event is rejected until parked; the others go.
			broker := &memBroker{batchErrors: true}
			broker.setFail(func(topic string, _ *message.Message) error {
				if topic == "topic.test.order_shipped" {
					return rejectedErr{"no route"}
				}
				return nil
			})
			r := e.start(broker, fastRelay())
			require.Eventually(t, func() bool { s := e.stats(); return s.Failed == 1 && s.Published == 3 }, 10*time.Second, 5*time.Millisecond)
			require.NoError(t, r.stop())
			st = e.stats()
			require.Equal(t, forwarder.Stats{Published: 3, Failed: 1}, st)
			failed, err := e.ob.Failed(ctx, 10)
			require.NoError(t, err)
			require.Len(t, failed, 1)
			require.Equal(t, all[3].EventID, failed[0].EventID)
			require.Contains(t, failed[0].LastError, "no route")
			require.Equal(t, 3, failed[0].Attempts)
		})
	}
}

func TestOutbox_PurgeDeletesOldPublishedRowsInBatches(t *testing.T) {
	t.Parallel()
	for _, b := range allBackends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b, func(c *forwarder.OutboxConfig) { c.PurgeBatchSize = 10 })
			ctx := context.Background()
			e.add(orders(0, 35)...)
			broker := &memBroker{}
			r := e.start(broker, fastRelay())
			require.Eventually(t, func() bool { return e.stats().Published == 35 }, 10*time.Second, 5*time.Millisecond)
			require.NoError(t, r.stop())
			e.add(orders(35, 2)...) // pending: never purged

			n, err := e.ob.Purge(ctx, time.Hour)
			require.NoError(t, err)
			require.Zero(t, n, "nothing was published an hour ago")

			time.Sleep(20 * time.Millisecond)
			n, err = e.ob.Purge(ctx, 10*time.Millisecond)
			require.NoError(t, err)
			require.Equal(t, int64(35), n, "all of them, ten per statement")
			st := e.stats()
			require.Equal(t, int64(2), st.Pending)
			require.Zero(t, st.Published)
			_, err = e.ob.Purge(ctx, -time.Second)
			require.Error(t, err)
		})
	}
}
