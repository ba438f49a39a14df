package middleware

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrInboxTx is returned by Commit and Rollback of the transaction a
// handler gets from PgxTxFromContext: the inbox commits it when the handler
// returns nil and rolls it back when the handler fails.
var ErrInboxTx = errors.New("middleware: the inbox ends this transaction: return nil to commit it, an error to roll it back")

// inboxPgxTx is an inbox transaction as a handler sees it: pgx's own
// transaction, whose Commit and Rollback are refused (the claim ends it)
// and whose statements are refused once the handler's claim ended (in a
// GroupTx the transaction goes on with other members). Begin makes a
// savepoint, as pgx's does.
type inboxPgxTx struct {
	pgx.Tx
	closed atomic.Bool
}

func newInboxPgxTx(tx pgx.Tx) *inboxPgxTx { return &inboxPgxTx{Tx: tx} }

func (t *inboxPgxTx) close() {
	if t != nil {
		t.closed.Store(true)
	}
}

func (t *inboxPgxTx) check() error {
	if t.closed.Load() {
		return pgx.ErrTxClosed
	}
	return nil
}

// Begin starts a pseudo nested transaction (a savepoint).
func (t *inboxPgxTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	return t.Tx.Begin(ctx)
}

// Commit returns ErrInboxTx.
func (t *inboxPgxTx) Commit(context.Context) error { return ErrInboxTx }

// Rollback returns ErrInboxTx.
func (t *inboxPgxTx) Rollback(context.Context) error { return ErrInboxTx }

func (t *inboxPgxTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.check(); err != nil {
		return 0, err
	}
	return t.Tx.CopyFrom(ctx, table, cols, src)
}

func (t *inboxPgxTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := t.check(); err != nil {
		return pgx.FailedBatchResults(b, err)
	}
	return t.Tx.SendBatch(ctx, b)
}

func (t *inboxPgxTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	return t.Tx.Prepare(ctx, name, sql)
}

func (t *inboxPgxTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.check(); err != nil {
		return pgconn.CommandTag{}, err
	}
	return t.Tx.Exec(ctx, sql, args...)
}

func (t *inboxPgxTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	return t.Tx.Query(ctx, sql, args...)
}

func (t *inboxPgxTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.check(); err != nil {
		return errRow{err}
	}
	return t.Tx.QueryRow(ctx, sql, args...)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// PgxTxFromContext returns the inbox transaction of a Deduplicate
// middleware in InTx mode over an inbox made by NewPostgresInboxPool (a
// pgx pool). Every write the handler makes with it, the inbox row, and any
// outbox events added with it (forwarder.Outbox.Add takes a pgx.Tx) commit
// together when the handler returns nil and roll back together when it
// fails. Its Commit and Rollback return ErrInboxTx; Begin makes a
// savepoint. ok is false outside that mode.
func PgxTxFromContext(ctx context.Context) (tx pgx.Tx, ok bool) {
	tx, ok = ctx.Value(pgxTxKey{}).(pgx.Tx)
	return tx, ok && tx != nil
}

type pgxTxKey struct{}

func contextWithPgxTx(ctx context.Context, tx pgx.Tx) context.Context {
	return context.WithValue(ctx, pgxTxKey{}, tx)
}
