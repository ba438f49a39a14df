package middleware

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

type dialect int

const (
	postgres dialect = iota
	mysql
	sqlite
)

func (d dialect) String() string {
	switch d {
	case postgres:
		return "PostgreSQL"
	case mysql:
		return "MySQL"
	default:
		return "SQLite"
	}
}

// SQLInbox is an InboxStore in a SQL database: one table keyed by
// (handler, event_id) with the time of handling. Make one with
// NewPostgresInbox, NewMySQLInbox or NewSQLiteInbox, then call Setup.
//
// A claim is a database transaction that inserts the key and stays open
// while the handler runs: a second delivery of the same event waits on the
// row lock (PostgreSQL, InnoDB) or the database write lock (SQLite) and then
// sees the key as recorded (ErrDuplicate) or gets the claim if the first
// one rolled back. Each message in flight holds one connection of the pool;
// size the pool for the number of messages handled at once.
//
// SQLite has one writer at a time: a claim blocks every other writer of the
// database until it ends. With SQLite, use Deduplicate's InTx mode when the
// handler writes to the same database (a handler writing through another
// connection would wait for the claim it runs under), set a busy timeout
// (e.g. _pragma=busy_timeout(5000)) and WAL mode.
//
// With InboxConfig.GroupCommit (PostgreSQL only), the claims made while a
// group transaction is open join it instead of beginning their own; the
// guarantees above hold, and each group holds one connection.
type SQLInbox struct {
	db      *sql.DB
	pool    *pgxpool.Pool // NewPostgresInboxPool; nil otherwise
	dialect dialect
	cfg     InboxConfig

	insertQ, purgeQ, containsQ string
	schema                     []string
	group                      *groupCommitter // InboxConfig.GroupCommit; nil without
	txGroup                    *txGrouper      // InboxConfig.GroupTx; nil without
	// raw is whether claims without a transaction for the handler go
	// through the pgx driver connection (rawYes), learnt at the first one.
	raw atomic.Int32
}

const (
	rawUnknown int32 = iota
	rawYes
	rawNo
)

// NewPostgresInbox returns an inbox in PostgreSQL through db (any
// database/sql driver; with pgx use the "pgx" stdlib driver, or
// stdlib.OpenDBFromPool for a pgxpool). It returns an error if db is nil or
// cfg is invalid.
func NewPostgresInbox(db *sql.DB, cfg InboxConfig) (*SQLInbox, error) {
	return newSQLInbox(db, cfg, postgres)
}

// NewMySQLInbox returns an inbox in MySQL or MariaDB (InnoDB) through db,
// opened with github.com/go-sql-driver/mysql. It returns an error if db is
// nil or cfg is invalid.
func NewMySQLInbox(db *sql.DB, cfg InboxConfig) (*SQLInbox, error) {
	return newSQLInbox(db, cfg, mysql)
}

// NewSQLiteInbox returns an inbox in SQLite (3.24 or newer) through db, for
// example modernc.org/sqlite's "sqlite" driver. It returns an error if db is
// nil or cfg is invalid.
func NewSQLiteInbox(db *sql.DB, cfg InboxConfig) (*SQLInbox, error) {
	return newSQLInbox(db, cfg, sqlite)
}

func newSQLInbox(db *sql.DB, cfg InboxConfig, d dialect) (*SQLInbox, error) {
	if db == nil {
		return nil, fmt.Errorf("middleware: %s inbox: db is nil", d)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.GroupCommit && d != postgres {
		return nil, fmt.Errorf("middleware: %s inbox: InboxConfig.GroupCommit is supported with PostgreSQL only", d)
	}
	if cfg.GroupTx && d != postgres {
		return nil, fmt.Errorf("middleware: %s inbox: InboxConfig.GroupTx is supported with PostgreSQL only", d)
	}
	if cfg.GroupTx {
		if _, ok := db.Driver().(*stdlib.Driver); !ok {
			return nil, fmt.Errorf("middleware: PostgreSQL inbox: InboxConfig.GroupTx needs the pgx driver (or NewPostgresInboxPool), not %T", db.Driver())
		}
	}
	s := &SQLInbox{db: db, dialect: d, cfg: cfg}
	if cfg.GroupCommit {
		s.group = newGroupCommitter(s)
	}
	if cfg.GroupTx {
		s.txGroup = newTxGrouper(s)
	}
	t := cfg.Table // validated: [a-z0-9_] only, safe to splice
	r := strings.NewReplacer("{t}", t)
	switch d {
	case postgres:
		s.schema = []string{
			r.Replace(`CREATE TABLE IF NOT EXISTS {t} (
	handler      TEXT        NOT NULL,
	event_id     TEXT        NOT NULL,
	processed_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (handler, event_id)
)`),
			r.Replace(`CREATE INDEX IF NOT EXISTS {t}_processed_at_idx ON {t} (processed_at)`),
		}
		s.insertQ = r.Replace(`INSERT INTO {t} (handler, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`)
		s.purgeQ = r.Replace(`DELETE FROM {t} WHERE ctid IN (
	SELECT ctid FROM {t} WHERE processed_at < $1 ORDER BY processed_at LIMIT $2 FOR UPDATE SKIP LOCKED)`)
		s.containsQ = r.Replace(`SELECT 1 FROM {t} WHERE handler = $1 AND event_id = $2`)
	case mysql:
		s.schema = []string{r.Replace(`CREATE TABLE IF NOT EXISTS {t} (
	handler      VARCHAR(200) NOT NULL,
	event_id     VARCHAR(255) NOT NULL,
	processed_at DATETIME(6)  NOT NULL,
	PRIMARY KEY (handler, event_id),
	KEY {t}_processed_at_idx (processed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`)}
		s.insertQ = r.Replace(`INSERT IGNORE INTO {t} (handler, event_id, processed_at) VALUES (?, ?, ?)`)
		s.purgeQ = r.Replace(`DELETE FROM {t} WHERE processed_at < ? ORDER BY processed_at LIMIT ?`)
		s.containsQ = r.Replace(`SELECT 1 FROM {t} WHERE handler = ? AND event_id = ?`)
	case sqlite:
		s.schema = []string{
			r.Replace(`CREATE TABLE IF NOT EXISTS {t} (
	handler      TEXT    NOT NULL,
	event_id     TEXT    NOT NULL,
	processed_at INTEGER NOT NULL,
	PRIMARY KEY (handler, event_id)
)`),
			r.Replace(`CREATE INDEX IF NOT EXISTS {t}_processed_at_idx ON {t} (processed_at)`),
		}
		s.insertQ = r.Replace(`INSERT INTO {t} (handler, event_id, processed_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`)
		s.purgeQ = r.Replace(`DELETE FROM {t} WHERE rowid IN (
	SELECT rowid FROM {t} WHERE processed_at < ? ORDER BY processed_at LIMIT ?)`)
		s.containsQ = r.Replace(`SELECT 1 FROM {t} WHERE handler = ? AND event_id = ?`)
	}
	return s, nil
}

// Table returns the inbox table name.
func (s *SQLInbox) Table() string { return s.cfg.Table }

// GroupCommit reports whether claims share group transactions
// (InboxConfig.GroupCommit).
func (s *SQLInbox) GroupCommit() bool { return s.group != nil }

// GroupTx reports whether claims share savepoint group transactions
// (InboxConfig.GroupTx).
func (s *SQLInbox) GroupTx() bool { return s.txGroup != nil }

// Retention returns InboxConfig.Retention.
func (s *SQLInbox) Retention() time.Duration { return s.cfg.Retention }

// Setup creates the inbox table and its index if they do not exist. It is
// idempotent and safe to run from several processes at once.
func (s *SQLInbox) Setup(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("middleware: inbox setup: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if s.dialect == postgres {
		// Concurrent CREATE … IF NOT EXISTS can collide in PostgreSQL.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "eventkit_inbox_setup:"+s.cfg.Table); err != nil {
			return fmt.Errorf("middleware: inbox setup: %w", err)
		}
	}
	for _, q := range s.schema {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("middleware: inbox setup of %s: %w", s.cfg.Table, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("middleware: inbox setup: %w", err)
	}
	return nil
}

func (s *SQLInbox) timeArg(t time.Time) any {
	if s.dialect == sqlite {
		return t.UnixMicro()
	}
	return t.UTC()
}

// Claim begins a transaction and inserts key in it. See SQLInbox for how
// concurrent claims of one key behave. The claim's statements (waiting for
// another delivery of the key included) end with ctx; the transaction does
// not: Commit or Rollback ends it, so a handler that succeeded as its context
// was cancelled (a router closing) still has its key recorded. With InboxConfig.GroupCommit the
// claim joins the open group transaction instead (its Tx is nil).
func (s *SQLInbox) Claim(ctx context.Context, key InboxKey) (InboxClaim, error) {
	return s.claim(ctx, key, true)
}

// claim claims key; withTx says whether the claim must give its
// transaction as a *sql.Tx (InboxClaim.Tx). A claim that need not gives
// none, and then BEGIN and the INSERT go in one round trip on the pgx
// driver.
func (s *SQLInbox) claim(ctx context.Context, key InboxKey, withTx bool) (InboxClaim, error) {
	if err := key.validate(); err != nil {
		return nil, Permanent(err)
	}
	switch {
	case s.group != nil:
		return s.group.claim(ctx, key)
	case s.txGroup != nil:
		return s.txGroup.claim(ctx, key)
	case s.pool != nil:
		return s.claimPgx(ctx, key)
	case !withTx && s.dialect == postgres && s.raw.Load() != rawNo:
		c, ok, err := s.claimRaw(ctx, key)
		if ok {
			s.raw.CompareAndSwap(rawUnknown, rawYes)
			return c, err
		}
		s.raw.Store(rawNo)
	}
	// The transaction outlives the message context: a handler that
	// succeeded while the router closes (its context cancelled) still gets
	// its key committed, so a graceful restart never runs it again. The
	// claim's own statements stay bounded by ctx; Deduplicate always ends
	// the transaction.
	tx, err := s.db.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		return nil, fmt.Errorf("middleware: inbox claim: begin: %w", err)
	}
	res, err := tx.ExecContext(ctx, s.insertQ, key.Handler, key.EventID, s.timeArg(time.Now()))
	if err != nil {
		_ = tx.Rollback()
		return nil, fmt.Errorf("middleware: inbox claim: insert into %s: %w", s.cfg.Table, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		_ = tx.Rollback()
		return nil, fmt.Errorf("middleware: inbox claim: %w", err)
	}
	if n == 0 {
		_ = tx.Rollback()
		return nil, ErrDuplicate
	}
	return &sqlClaim{tx: tx}, nil
}

// Purge deletes at most limit keys recorded before cutoff, oldest first. On
// PostgreSQL concurrent purgers skip each other's rows (SKIP LOCKED).
func (s *SQLInbox) Purge(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	if limit <= 0 {
		return 0, nil
	}
	res, err := s.db.ExecContext(ctx, s.purgeQ, s.timeArg(cutoff), limit)
	if err != nil {
		return 0, fmt.Errorf("middleware: inbox purge of %s: %w", s.cfg.Table, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("middleware: inbox purge of %s: %w", s.cfg.Table, err)
	}
	return n, nil
}

// Contains reports whether key is recorded (committed).
func (s *SQLInbox) Contains(ctx context.Context, key InboxKey) (bool, error) {
	var one int
	err := s.db.QueryRowContext(ctx, s.containsQ, key.Handler, key.EventID).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("middleware: inbox lookup in %s: %w", s.cfg.Table, err)
	}
	return true, nil
}

type sqlClaim struct {
	tx *sql.Tx
}

func (c *sqlClaim) Tx() *sql.Tx { return c.tx }

func (c *sqlClaim) Commit(context.Context) error {
	if err := c.tx.Commit(); err != nil {
		return fmt.Errorf("middleware: inbox commit: %w", err)
	}
	return nil
}

func (c *sqlClaim) Rollback() error {
	if err := c.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("middleware: inbox rollback: %w", err)
	}
	return nil
}
