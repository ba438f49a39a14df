package cqrs_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	_ "github.com/b2131a45/eventkit/internal/dburl/sqlitedriver"
)

// OrderPlaced is a domain event: it never leaves the service.
type OrderPlaced struct {
	OrderID  string
	Email    string
	Total    int
	Internal bool
}

// OrderCreatedV1 is its integration event.
type OrderCreatedV1 struct {
	OrderID string `json:"order_id"`
	Total   int    `json:"total"`
}

func toIntegration(d OrderPlaced) (OrderCreatedV1, bool) {
	if d.Internal {
		return OrderCreatedV1{}, false // internal orders stay inside
	}
	return OrderCreatedV1{OrderID: d.OrderID, Total: d.Total}, true
}

func newOutbox(t *testing.T) (*sql.DB, *forwarder.Outbox) {
	t.Helper()
	reg := events.NewRegistry()
	require.NoError(t, events.Register[OrderCreatedV1](reg, "orders.order_created"))
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "c.db")+"?_pragma=busy_timeout(5000)&_txlock=immediate")
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Source: "orders"})
	require.NoError(t, err)
	require.NoError(t, ob.Setup(context.Background()))
	return db, ob
}

func pending(t *testing.T, ob *forwarder.Outbox) []forwarder.Record {
	t.Helper()
	recs, err := ob.Pending(context.Background(), 10)
	require.NoError(t, err)
	return recs
}

func TestConvertAndAdd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("converts and adds in the caller's transaction", func(t *testing.T) {
		t.Parallel()
		db, ob := newOutbox(t)
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		handle := cqrs.ConvertAndAdd(toIntegration, ob.Bus(tx))
		require.NoError(t, handle(ctx, OrderPlaced{OrderID: "o-1", Email: "a@b", Total: 42}))
		require.Empty(t, pending(t, ob), "not visible before commit")
		require.NoError(t, tx.Commit())
		recs := pending(t, ob)
		require.Len(t, recs, 1)
		require.Equal(t, "orders.order_created", recs[0].Name)
	})

	t.Run("a rolled-back transaction leaves no event", func(t *testing.T) {
		t.Parallel()
		db, ob := newOutbox(t)
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, cqrs.ConvertAndAdd(toIntegration, ob.Bus(tx))(ctx, OrderPlaced{OrderID: "o-2"}))
		require.NoError(t, tx.Rollback())
		require.Empty(t, pending(t, ob))
	})

	t.Run("a declining converter adds nothing", func(t *testing.T) {
		t.Parallel()
		db, ob := newOutbox(t)
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, cqrs.ConvertAndAdd(toIntegration, ob.Bus(tx))(ctx, OrderPlaced{OrderID: "o-3", Internal: true}))
		require.NoError(t, tx.Commit())
		require.Empty(t, pending(t, ob))
	})

	t.Run("a PublisherFunc reaches the transaction through ctx", func(t *testing.T) {
		t.Parallel()
		db, ob := newOutbox(t)
		type txKey struct{}
		handle := cqrs.ConvertAndAdd(toIntegration, cqrs.PublisherFunc(func(ctx context.Context, evts ...any) error {
			return ob.Add(ctx, ctx.Value(txKey{}), evts...)
		}))
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, handle(context.WithValue(ctx, txKey{}, tx), OrderPlaced{OrderID: "o-4", Total: 1}))
		require.NoError(t, handle(context.WithValue(ctx, txKey{}, tx), OrderPlaced{OrderID: "o-5", Total: 2}))
		require.NoError(t, tx.Commit())
		require.Len(t, pending(t, ob), 2)

		// Without a transaction in ctx the outbox refuses, and the error
		// says what was being converted.
		err = handle(ctx, OrderPlaced{OrderID: "o-6"})
		require.ErrorIs(t, err, forwarder.ErrNotTransaction)
		require.ErrorContains(t, err, "OrderCreatedV1 converted from cqrs_test.OrderPlaced")
	})

	t.Run("publisher errors are returned", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("boom")
		handle := cqrs.ConvertAndAdd(toIntegration, cqrs.PublisherFunc(func(context.Context, ...any) error { return boom }))
		require.ErrorIs(t, handle(ctx, OrderPlaced{}), boom)
		require.NoError(t, handle(ctx, OrderPlaced{Internal: true}), "a declined event is not published")
	})

	t.Run("nil converter or publisher is a wiring bug", func(t *testing.T) {
		t.Parallel()
		require.Panics(t, func() { cqrs.ConvertAndAdd[OrderPlaced, OrderCreatedV1](nil, cqrs.PublisherFunc(nil)) })
		require.Panics(t, func() { cqrs.ConvertAndAdd(toIntegration, nil) })
	})
}
