package middleware

import (
	"context"
	"database/sql"
)

type attemptKey struct{}
type txKey struct{}

// AttemptFromContext returns the attempt number of the handling in
// progress: 1 for the first attempt, 2 for the first retry, and so on. It is
// 1 outside Retry. Attempts are counted within one delivery: a message that
// is nacked and redelivered starts again at 1.
func AttemptFromContext(ctx context.Context) int {
	if n, ok := ctx.Value(attemptKey{}).(int); ok && n > 0 {
		return n
	}
	return 1
}

func withAttempt(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, attemptKey{}, n)
}

// TxFromContext returns the inbox transaction of a Deduplicate middleware in
// InTx mode. Every write the handler makes with it, the inbox row, and any
// outbox events added with it commit together when the handler returns nil
// and roll back together when it fails. ok is false outside InTx mode.
func TxFromContext(ctx context.Context) (tx *sql.Tx, ok bool) {
	tx, ok = ctx.Value(txKey{}).(*sql.Tx)
	return tx, ok && tx != nil
}

// ContextWithTx returns ctx carrying tx, as Deduplicate in InTx mode does.
// It is meant for tests of handlers that read TxFromContext.
func ContextWithTx(ctx context.Context, tx *sql.Tx) context.Context {
	return context.WithValue(ctx, txKey{}, tx)
}
