package forwarder_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	wmforwarder "github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/forwarder"
)

// A stock Watermill forwarder drains part of the outbox and is stopped;
// AdoptForwarderProgress marks what it acknowledged as published, and the
// relay publishes the rest: every event reaches the broker exactly once.
func TestAdoptForwarderProgress(t *testing.T) {
	t.Parallel()
	for _, b := range []backend{pgStd, mysqlB} {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := newEnv(t, b)
			for i := 0; i < 10; i += 2 {
				e.add(orders(i, 2)...) // 5 transactions
			}
			ids := e.pendingIDs()
			require.Len(t, ids, 10)
			// Parked by an earlier relay: one row the stock forwarder will
			// pass (it does not read status), one it will not reach.
			e.park(ids[1])
			e.park(ids[8])

			// The stock forwarder (default consumer group "", one row per
			// transaction) gets 4 rows confirmed, then the broker refuses the
			// 5th, which it retries until it is stopped.
			stock := &memBroker{}
			var confirmed, refused atomic.Int64
			stock.setFail(func(string, *message.Message) error {
				if confirmed.Load() == 4 {
					refused.Add(1)
					return errPlain
				}
				confirmed.Add(1)
				return nil
			})
			stop := runStockForwarder(t, e, "", 1, stock)
			require.Eventually(t, func() bool { return refused.Load() > 0 }, 20*time.Second, 5*time.Millisecond)
			stop()
			require.Equal(t, ids[:4], uuids(stock.messages()))

			e.add(orders(10, 2)...) // written after the stock forwarder stopped
			all := slices.Concat(ids, e.pendingIDs()[8:])
			require.Len(t, all, 12)

			// Before the adoption the stock-drained rows count as pending.
			require.Equal(t, int64(10), e.stats().Pending)

			n, err := e.ob.AdoptForwarderProgress(ctx, "")
			require.NoError(t, err)
			require.Equal(t, int64(3), n, "rows 0, 2, 3; row 1 stays failed")
			st := e.stats()
			require.Equal(t, int64(7), st.Pending)
			require.Equal(t, int64(3), st.Published)
			require.Equal(t, int64(2), st.Failed)
			require.Equal(t, append([]string{ids[4], ids[5], ids[6], ids[7], ids[9]}, all[10:]...), e.pendingIDs())

			n, err = e.ob.AdoptForwarderProgress(ctx, "")
			require.NoError(t, err)
			require.Zero(t, n, "a second adoption changes nothing")

			relayed := &memBroker{}
			r := e.start(relayed, fastRelay())
			require.Eventually(t, func() bool { return e.stats().Pending == 0 && len(relayed.messages()) == 7 },
				20*time.Second, 5*time.Millisecond)
			_, err = e.ob.AdoptForwarderProgress(ctx, "")
			require.ErrorIs(t, err, forwarder.ErrRelayActive)
			n, err = e.ob.Requeue(ctx, ids[8])
			require.NoError(t, err)
			require.EqualValues(t, 1, n)
			relayed.waitCount(t, 8, 20*time.Second)
			require.NoError(t, r.stop())

			got := map[string]int{}
			for _, p := range append(stock.messages(), relayed.messages()...) {
				got[p.msg.UUID]++
			}
			for i, id := range all {
				require.Equal(t, 1, got[id], "event %d (%s) published %d times", i, id, got[id])
			}
			require.Len(t, got, len(all))
			require.Equal(t, []int{4, 5, 6, 7, 9, 10, 11, 8}, relayed.seqs(t), "commit order, then the requeued row")

			// A group without a row: the error names it and the groups found.
			_, err = e.ob.AdoptForwarderProgress(ctx, "billing")
			require.ErrorIs(t, err, forwarder.ErrNoForwarderProgress)
			require.ErrorContains(t, err, `consumer group "billing" has no row in table watermill_offsets_`+e.name)
			require.ErrorContains(t, err, `groups found: ""`)
		})
	}
}

func TestAdoptForwarderProgressErrors(t *testing.T) {
	t.Parallel()
	for _, b := range []backend{pgStd, mysqlB} {
		t.Run(string(b)+"/no stock forwarder has run", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			e.add(orders(0, 2)...)
			n, err := e.ob.AdoptForwarderProgress(context.Background(), "")
			require.ErrorIs(t, err, forwarder.ErrNoForwarderProgress)
			require.ErrorContains(t, err, "table watermill_offsets_"+e.name+" does not exist, so no stock Watermill forwarder has run")
			require.Zero(t, n)
			require.Equal(t, int64(2), e.stats().Pending)
		})
		t.Run(string(b)+"/group without a row", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			e.add(orders(0, 1)...)
			stock := &memBroker{}
			stop := runStockForwarder(t, e, "orders-forwarder", 0, stock)
			stock.waitCount(t, 1, 20*time.Second)
			e.waitStockAcked(t, "orders-forwarder")
			stop()
			_, err := e.ob.AdoptForwarderProgress(context.Background(), "")
			require.ErrorIs(t, err, forwarder.ErrNoForwarderProgress)
			require.ErrorContains(t, err, `consumer group "" has no row`)
			require.ErrorContains(t, err, `groups found: "orders-forwarder"`)
		})
	}
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sqlite)
		_, err := e.ob.AdoptForwarderProgress(context.Background(), "")
		require.ErrorContains(t, err, "SQLite")
		_, err = e.ob.HandOverToForwarder(context.Background(), "")
		require.ErrorContains(t, err, "SQLite")
	})
}

// The relay parks a row and publishes the others; HandOverToForwarder
// sets the stock offset before the parked row, so the stock forwarder
// publishes it, the row the relay published after it (again), and the
// rows written since; adopting back then leaves nothing pending.
func TestHandOverToForwarderAndAdoptBack(t *testing.T) {
	t.Parallel()
	for _, b := range []backend{pgStd, mysqlB} {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := newEnv(t, b)
			for i := 0; i < 6; i += 2 {
				e.add(orders(i, 2)...)
			}
			relayed := &memBroker{batchErrors: true} // says which messages it refused
			relayed.setFail(func(_ string, m *message.Message) error {
				if decodeSeq(t, m) == 3 {
					return rejectedErr{"312 NO_ROUTE"}
				}
				return nil
			})
			r := e.start(relayed, fastRelay())
			require.Eventually(t, func() bool { st := e.stats(); return st.Published == 5 && st.Failed == 1 },
				20*time.Second, 5*time.Millisecond)
			_, err := e.ob.HandOverToForwarder(ctx, "")
			require.ErrorIs(t, err, forwarder.ErrRelayActive)
			require.NoError(t, r.stop())
			e.add(orders(6, 2)...)

			resent, err := e.ob.HandOverToForwarder(ctx, "")
			require.NoError(t, err)
			require.Equal(t, int64(2), resent, "rows 4 and 5 were published after the parked row 3")

			stock := &memBroker{}
			stop := runStockForwarder(t, e, "", 0, stock)
			stock.waitCount(t, 5, 20*time.Second)
			e.waitStockAcked(t, "")
			stop()
			require.Equal(t, []int{3, 4, 5, 6, 7}, stock.seqs(t))
			require.Equal(t, []int{0, 1, 2, 4, 5}, relayed.seqs(t))

			// And back: the rows the stock forwarder published since are
			// adopted; the parked row stays failed.
			n, err := e.ob.AdoptForwarderProgress(ctx, "")
			require.NoError(t, err)
			require.Equal(t, int64(2), n)
			st := e.stats()
			require.Zero(t, st.Pending)
			require.Equal(t, int64(1), st.Failed)

			// Nothing published yet: the stock forwarder starts from the
			// first row.
			fresh := newEnv(t, b)
			fresh.add(orders(0, 2)...)
			resent, err = fresh.ob.HandOverToForwarder(ctx, "g")
			require.NoError(t, err)
			require.Zero(t, resent)
			stock = &memBroker{}
			stop = runStockForwarder(t, fresh, "g", 0, stock)
			stock.waitCount(t, 2, 20*time.Second)
			fresh.waitStockAcked(t, "g")
			stop()
			require.Equal(t, []int{0, 1}, stock.seqs(t))
		})
	}
}

// runStockForwarder runs a stock Watermill forwarder on e's outbox, as
// compat_test.go does: components/forwarder over a watermill-sql
// subscriber with the default schema (batch rows per read; 0: its
// default) and offsets adapter, publishing to pub. stop stops it and waits.
func runStockForwarder(t *testing.T, e *env, group string, batch int, pub message.Publisher) (stop func()) {
	t.Helper()
	var schema wmsql.SchemaAdapter = wmsql.DefaultPostgreSQLSchema{SubscribeBatchSize: batch}
	var offsets wmsql.OffsetsAdapter = wmsql.DefaultPostgreSQLOffsetsAdapter{}
	if e.backend == mysqlB {
		schema, offsets = wmsql.DefaultMySQLSchema{SubscribeBatchSize: batch}, wmsql.DefaultMySQLOffsetsAdapter{}
	}
	logger := watermill.NopLogger{}
	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(e.db), wmsql.SubscriberConfig{
		ConsumerGroup:    group,
		SchemaAdapter:    schema,
		OffsetsAdapter:   offsets,
		InitializeSchema: true,
		PollInterval:     10 * time.Millisecond,
		ResendInterval:   10 * time.Millisecond,
	}, logger)
	require.NoError(t, err)
	fwd, err := wmforwarder.NewForwarder(sub, pub, logger, wmforwarder.Config{ForwarderTopic: e.name})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fwd.Run(ctx) }()
	<-fwd.Running()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, fwd.Close())
			<-done
			require.NoError(t, sub.Close())
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitStockAcked waits until the stock forwarder of group acknowledged
// the last row of the outbox: it is idle, nothing of it is in flight.
func (e *env) waitStockAcked(t *testing.T, group string) {
	t.Helper()
	q := `SELECT COALESCE((SELECT offset_acked FROM "watermill_offsets_` + e.name + `" WHERE consumer_group = $1), -1)
		= (SELECT MAX("offset") FROM "` + e.ob.Table() + `")`
	if e.backend == mysqlB {
		q = strings.NewReplacer(`"`, "`", "$1", "?").Replace(q)
	}
	require.Eventually(t, func() bool {
		var acked bool
		err := e.db.QueryRowContext(context.Background(), q, group).Scan(&acked)
		return err == nil && acked
	}, 20*time.Second, 5*time.Millisecond, "the stock forwarder did not acknowledge the last row")
}

// park marks a row failed, as a relay does after MaxAttempts.
func (e *env) park(id string) {
	e.t.Helper()
	q := `UPDATE "` + e.ob.Table() + `" SET "status" = 2, "attempts" = 3, "last_error" = 'rejected' WHERE "uuid" = $1`
	if e.backend == mysqlB {
		q = strings.NewReplacer(`"`, "`", "$1", "?").Replace(q)
	}
	require.NoError(e.t, e.exec(context.Background(), q, id))
}

// pendingIDs returns the event ids of the pending rows in relay order.
func (e *env) pendingIDs() []string {
	e.t.Helper()
	recs, err := e.ob.Pending(context.Background(), 1000)
	require.NoError(e.t, err)
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.EventID
	}
	return ids
}

func uuids(ps []published) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.msg.UUID
	}
	return out
}
