package forwarder

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// querier runs statements; *sql.DB, *sql.Conn, *sql.Tx, pgx pools,
// connections and transactions all fit behind it.
type querier interface {
	exec(ctx context.Context, q string, args ...any) (int64, error)
	query(ctx context.Context, q string, args ...any) (rows, error)
}

type rows interface {
	Next() bool
	// Scan also takes a *borrowed.
	Scan(dest ...any) error
	Err() error
	Close()
}

// borrowed is a Scan destination for bytes valid until the next Next or
// Close only: the driver's buffer rather than a copy (database/sql's
// RawBytes, pgx's DriverBytes). The relay reads its payloads so, each
// decoded at once: 430 bytes and an allocation less per row.
type borrowed []byte

// lend replaces each *borrowed of dest with the driver's own kind.
func lend(dest []any, as func(*borrowed) any) {
	for i, d := range dest {
		if b, ok := d.(*borrowed); ok {
			dest[i] = as(b)
		}
	}
}

// database is the outbox's own handle: the pool the relay and the
// inspection methods use.
type database interface {
	querier
	// session returns a dedicated connection: the relay holds its
	// leadership lock and its LISTEN on it.
	session(ctx context.Context) (session, error)
	// inTx runs fn in a transaction on one connection.
	inTx(ctx context.Context, fn func(q querier) error) error
}

// session is one dedicated database connection.
type session interface {
	querier
	// canListen reports whether waitNotification works (pgx connections).
	canListen() bool
	// waitNotification blocks until a notification arrives (true), ctx
	// ends (false, nil) or the connection fails.
	waitNotification(ctx context.Context) (bool, error)
	// drainNotifications discards notifications already received.
	drainNotifications()
	// close returns the connection to its pool, or discards it when
	// discard is true (its session state may be dirty or broken).
	close(discard bool)
}

// ---- database/sql ----------------------------------------------------------

type stdQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

type stdQ struct{ q stdQuerier }

func (s stdQ) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := s.q.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, nil //nolint:nilerr // drivers without RowsAffected: the count is informational
	}
	return n, nil
}

func (s stdQ) query(ctx context.Context, q string, args ...any) (rows, error) {
	r, err := s.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return stdRows{r}, nil
}

type stdRows struct{ *sql.Rows }

func (r stdRows) Close() { _ = r.Rows.Close() }

func (r stdRows) Scan(dest ...any) error {
	lend(dest, func(b *borrowed) any { return (*sql.RawBytes)(b) })
	return r.Rows.Scan(dest...)
}

type stdDB struct {
	stdQ
	db *sql.DB
}

func newStdDB(db *sql.DB) *stdDB { return &stdDB{stdQ: stdQ{db}, db: db} }

func (d *stdDB) session(ctx context.Context) (session, error) {
	c, err := d.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	s := &stdSession{querier: stdQ{c}, conn: c}
	_ = c.Raw(func(dc any) error {
		if sc, ok := dc.(*stdlib.Conn); ok {
			s.pc = sc.Conn()
		}
		return nil
	})
	if s.pc != nil {
		// The *sql.Conn is the session's until close: nothing else uses its
		// driver connection meanwhile, so the session's statements go to it
		// natively, without database/sql's per-row value conversions (the
		// relay reads its batches on the session: BenchmarkRelayDrain/postgres
		// went from 22 to 17 allocations per row).
		s.querier = pgxQOf(connExec{s.pc})
	}
	return s, nil
}

func (d *stdDB) inTx(ctx context.Context, fn func(q querier) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(stdQ{tx}); err != nil {
		return errors.Join(err, ignoreDone(tx.Rollback()))
	}
	return tx.Commit()
}

func ignoreDone(err error) error {
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}

type stdSession struct {
	querier
	conn *sql.Conn
	pc   *pgx.Conn // the driver connection when it is pgx's (LISTEN works), nil otherwise
}

func (s *stdSession) canListen() bool { return s.pc != nil }

func (s *stdSession) waitNotification(ctx context.Context) (bool, error) {
	if s.pc == nil {
		return false, errors.New("notifications need the pgx driver")
	}
	return waitPgx(ctx, s.pc)
}

func (s *stdSession) drainNotifications() {
	if s.pc != nil {
		drainPgx(s.pc)
	}
}

func (s *stdSession) close(discard bool) {
	if discard {
		// Returning driver.ErrBadConn from Raw makes database/sql drop the
		// connection instead of pooling it.
		_ = s.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	_ = s.conn.Close()
}

// ---- pgx -------------------------------------------------------------------

type pgxQ struct {
	exe func(ctx context.Context, sql string, args ...any) (int64, error)
	qry func(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (p pgxQ) exec(ctx context.Context, q string, args ...any) (int64, error) {
	return p.exe(ctx, q, args...)
}

func (p pgxQ) query(ctx context.Context, q string, args ...any) (rows, error) {
	r, err := p.qry(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgxRows{r}, nil
}

type pgxRows struct{ pgx.Rows }

func (r pgxRows) Scan(dest ...any) error {
	lend(dest, func(b *borrowed) any { return (*pgtype.DriverBytes)(b) })
	return r.Rows.Scan(dest...)
}

// pgxExecQuerier is what pgx.Conn, pgx.Tx, pgxpool.Pool and pgxpool.Conn share.
type pgxExecQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func pgxQOf[T interface {
	pgxExecQuerier
	execer
}](c T) pgxQ {
	return pgxQ{
		exe: func(ctx context.Context, q string, args ...any) (int64, error) {
			tag, err := c.Exec(ctx, q, args...)
			return tag.RowsAffected(), err
		},
		qry: c.Query,
	}
}

type pgxDB struct {
	pgxQ
	pool *pgxpool.Pool
}

func newPgxDB(pool *pgxpool.Pool) *pgxDB { return &pgxDB{pgxQ: pgxQOf(poolExec{pool}), pool: pool} }

func (d *pgxDB) session(ctx context.Context) (session, error) {
	c, err := d.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return &pgxSession{pgxQ: pgxQOf(connExec{c.Conn()}), conn: c}, nil
}

func (d *pgxDB) inTx(ctx context.Context, fn func(q querier) error) error {
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(pgxQOf(txExec{tx})); err != nil {
		return errors.Join(err, ignorePgxDone(tx.Rollback(context.WithoutCancel(ctx))))
	}
	return tx.Commit(ctx)
}

func ignorePgxDone(err error) error {
	if errors.Is(err, pgx.ErrTxClosed) {
		return nil
	}
	return err
}

type pgxSession struct {
	pgxQ
	conn *pgxpool.Conn
}

func (s *pgxSession) canListen() bool { return true }

func (s *pgxSession) waitNotification(ctx context.Context) (bool, error) {
	return waitPgx(ctx, s.conn.Conn())
}

func (s *pgxSession) drainNotifications() { drainPgx(s.conn.Conn()) }

func (s *pgxSession) close(discard bool) {
	if discard {
		// A closed connection is destroyed by the pool on Release.
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		_ = s.conn.Conn().Close(ctx)
		cancel()
	}
	s.conn.Release()
}

// waitPgx waits for a notification on c. A context that ends is not an
// error: pgx's deadline-based context watcher leaves the connection usable.
func waitPgx(ctx context.Context, c *pgx.Conn) (bool, error) {
	n, err := c.WaitForNotification(ctx)
	if n != nil {
		return true, nil
	}
	if err != nil && ctx.Err() != nil && !c.IsClosed() {
		return false, nil
	}
	return false, err
}

var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

func drainPgx(c *pgx.Conn) {
	// With buffered notifications WaitForNotification returns one without
	// touching the network; with none and a done context it returns at once.
	for range 1 << 16 {
		if n, _ := c.WaitForNotification(doneCtx); n == nil {
			return
		}
	}
}

// execer is the Exec method shared by pgx types.
type execer interface {
	Exec(ctx context.Context, sql string, arguments ...any) (pgconnTag, error)
}

type pgconnTag interface{ RowsAffected() int64 }

// The adapters below give each pgx type an Exec returning an interface, so
// one generic constructor serves all of them.

type poolExec struct{ *pgxpool.Pool }

func (p poolExec) Exec(ctx context.Context, q string, args ...any) (pgconnTag, error) {
	return p.Pool.Exec(ctx, q, args...)
}

type connExec struct{ *pgx.Conn }

func (c connExec) Exec(ctx context.Context, q string, args ...any) (pgconnTag, error) {
	return c.Conn.Exec(ctx, q, args...)
}

type txExec struct{ pgx.Tx }

func (t txExec) Exec(ctx context.Context, q string, args ...any) (pgconnTag, error) {
	return t.Tx.Exec(ctx, q, args...)
}

// ---- the caller's transaction ----------------------------------------------

// stdTx is a database/sql-style transaction of another type (sqlx.Tx).
// Commit and Rollback tell it from a pool such as sqlx.DB.
type stdTx interface {
	stdQuerier
	Commit() error
	Rollback() error
}

// Tx is the caller's open transaction, in which Add writes the outbox rows:
// a *sql.Tx, a pgx.Tx (from pgx.Conn.Begin or pgxpool.Pool.Begin), or any
// value with database/sql's ExecContext, QueryContext, Commit and Rollback
// methods (a wrapper such as sqlx.Tx). A
// *sql.DB, *sql.Conn, *pgx.Conn or pgx pool is refused with
// ErrNotTransaction: writes through them would commit on their own.
type Tx = any

func txQuerier(tx Tx) (querier, error) {
	switch t := tx.(type) {
	case nil:
		return nil, fmt.Errorf("%w: nil", ErrNotTransaction)
	case *sql.DB, *sql.Conn, *pgx.Conn, *pgxpool.Pool, *pgxpool.Conn:
		return nil, fmt.Errorf("%w: %T", ErrNotTransaction, tx)
	case *sql.Tx:
		if t == nil {
			return nil, fmt.Errorf("%w: nil *sql.Tx", ErrNotTransaction)
		}
		return stdQ{t}, nil
	case pgx.Tx:
		if v := reflect.ValueOf(t); v.Kind() == reflect.Pointer && v.IsNil() {
			return nil, fmt.Errorf("%w: nil %T", ErrNotTransaction, tx)
		}
		return pgxQOf(txExec{t}), nil
	case stdTx:
		return stdQ{t}, nil
	default:
		return nil, fmt.Errorf("%w: unsupported type %T", ErrNotTransaction, tx)
	}
}
