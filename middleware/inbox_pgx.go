package middleware

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// NewPostgresInboxPool returns an inbox in PostgreSQL whose claims run on
// pool natively: BEGIN and the claim's INSERT go to the server in one round
// trip (a pipeline), the COMMIT in a second, with no database/sql in
// between. Its guarantees are NewPostgresInbox's. In Deduplicate's InTx mode
// the handler gets the claim's transaction as a pgx.Tx from
// PgxTxFromContext (TxFromContext reports none). Setup, Purge, Contains,
// Stats and group commits go through stdlib.OpenDBFromPool(pool), which
// Close releases (the pool stays the caller's). It returns an error if pool
// is nil or cfg is invalid.
func NewPostgresInboxPool(pool *pgxpool.Pool, cfg InboxConfig) (*SQLInbox, error) {
	if pool == nil {
		return nil, errors.New("middleware: PostgreSQL inbox: pool is nil")
	}
	s, err := newSQLInbox(stdlib.OpenDBFromPool(pool), cfg, postgres)
	if err != nil {
		return nil, err
	}
	s.pool = pool
	return s, nil
}

// Close releases the database/sql handle NewPostgresInboxPool made over its
// pool; it neither closes the pool nor a *sql.DB given to the other
// constructors, for which it does nothing. Call it when no claim is open.
func (s *SQLInbox) Close() error {
	if s.pool == nil {
		return nil
	}
	return s.db.Close()
}

// claimPgx claims key on a connection of the inbox's pgx pool.
func (s *SQLInbox) claimPgx(ctx context.Context, key InboxKey) (InboxClaim, error) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("middleware: inbox claim: acquire a connection: %w", err)
	}
	// The pool destroys a connection given back closed or in a transaction.
	return s.beginPgx(ctx, key, pc.Conn(), pc.Release)
}

// claimRaw claims key with BEGIN and the INSERT in one round trip on a
// database/sql connection of the pgx driver, without a *sql.Tx: for
// claims whose transaction no handler sees (Deduplicate without InTx). It
// reports false when the driver is not pgx's.
func (s *SQLInbox) claimRaw(ctx context.Context, key InboxKey) (InboxClaim, bool, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, true, fmt.Errorf("middleware: inbox claim: %w", err)
	}
	var pgc *pgx.Conn
	_ = conn.Raw(func(dc any) error {
		if sc, ok := dc.(*stdlib.Conn); ok {
			pgc = sc.Conn()
		}
		return nil
	})
	if pgc == nil {
		_ = conn.Close()
		return nil, false, nil
	}
	// The *sql.Conn is the claim's until release closes it: nothing else
	// uses its driver connection meanwhile, so the claim uses pgc directly.
	release := func() {
		if pgc.IsClosed() || pgc.PgConn().TxStatus() != 'I' {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		_ = conn.Close()
	}
	c, err := s.beginPgx(ctx, key, pgc, release)
	return c, true, err
}

// beginPgx sends BEGIN and the claim's INSERT as one pipeline on conn. The
// statements end with ctx; the transaction does not.
func (s *SQLInbox) beginPgx(ctx context.Context, key InboxKey, conn *pgx.Conn, release func()) (InboxClaim, error) {
	tx, inserted, err := pipelineInsert(ctx, conn, true, "", s.insertQ, key, time.Now())
	if err != nil || !inserted {
		rctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
		_ = tx.Rollback(rctx) // closed already when the begin failed
		cancel()
		release()
		if err != nil {
			return nil, fmt.Errorf("middleware: inbox claim: insert into %s: %w", s.cfg.Table, err)
		}
		return nil, ErrDuplicate
	}
	return &pgxClaim{tx: tx, release: release}, nil
}

// pipelineInsert sends [BEGIN,] [SAVEPOINT savepoint,] and the insert of
// key in one round trip and reports whether the row was inserted. With
// begin it returns the transaction begun, which the caller must end (an
// insert that failed leaves it aborted).
func pipelineInsert(ctx context.Context, conn *pgx.Conn, begin bool, savepoint, insertQ string, key InboxKey, now time.Time) (pgx.Tx, bool, error) {
	b := &pgx.Batch{}
	if begin {
		b.BeginTx(pgx.TxOptions{})
	}
	if savepoint != "" {
		b.Queue("SAVEPOINT " + savepoint)
	}
	b.Queue(insertQ, key.Handler, key.EventID, now.UTC())
	br := conn.SendBatch(ctx, b)
	var tag pgconn.CommandTag
	var err error
	for range b.Len() {
		if tag, err = br.Exec(); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return br.Tx(), err == nil && tag.RowsAffected() == 1, err
}

// pgxClaim is a claim whose transaction is a pgx one.
type pgxClaim struct {
	tx      pgx.Tx
	release func()      // gives the connection back
	view    *inboxPgxTx // the handler's (InTx), made on demand
	ended   bool
}

// Tx returns nil: the transaction is a pgx one (PgxTx).
func (c *pgxClaim) Tx() *sql.Tx { return nil }

// PgxTx returns the claim's transaction for an InTx handler: its Commit
// and Rollback are refused, the claim ends it.
func (c *pgxClaim) PgxTx() pgx.Tx {
	if c.view == nil {
		c.view = newInboxPgxTx(c.tx)
	}
	return c.view
}

func (c *pgxClaim) Commit(ctx context.Context) error {
	if c.ended {
		return errors.New("middleware: inbox commit: the claim was already committed or rolled back")
	}
	c.ended = true
	c.view.close()
	err := c.tx.Commit(ctx) // ErrTxCommitRollback when a statement of the handler failed
	c.release()
	if err != nil {
		return fmt.Errorf("middleware: inbox commit: %w", err)
	}
	return nil
}

func (c *pgxClaim) Rollback() error {
	if c.ended {
		return nil
	}
	c.ended = true
	c.view.close()
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	err := c.tx.Rollback(ctx)
	c.release()
	if err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return fmt.Errorf("middleware: inbox rollback: %w", err)
	}
	return nil
}
