package forwarder

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ActiveRelay is the relay that holds an outbox's lock, as the database
// shows it to any process (Outbox.ActiveRelay).
type ActiveRelay struct {
	// Active reports whether a relay holds the lock now: one relay is
	// publishing, the others (if any) stand by.
	Active bool
	// Holder names it: on PostgreSQL the backend ("pid 4242 from 10.0.0.5,
	// application orders"), on MySQL the connection id, on SQLite the
	// relay's id (from its lease). Empty when none is active.
	Holder string
	// Since is when the holder's session started (PostgreSQL; its lock may
	// be younger), or when its SQLite lease expires (Until). Zero when
	// unknown.
	Since, Until time.Time
}

// ActiveRelay reports whether a relay of the outbox is active, from any
// process, without taking or disturbing the lock: it reads pg_locks and
// pg_stat_activity (PostgreSQL), IS_USED_LOCK (MySQL) or the lease row
// (SQLite). A relay that lost its connection shows as inactive until a
// standby takes over (RelayConfig.TakeoverInterval).
func (o *Outbox) ActiveRelay(ctx context.Context) (ActiveRelay, error) {
	var a ActiveRelay
	switch o.cfg.Dialect {
	case Postgres:
		var pid int64
		var addr, app string
		var since time.Time
		err := scanOne(ctx, o.db, []any{&pid, &addr, &app, &since}, `
			WITH k AS (SELECT hashtextextended($1 || current_schema(), 0) AS key)
			SELECT l.pid, COALESCE(host(a.client_addr), ''), COALESCE(a.application_name, ''),
				COALESCE(a.backend_start, CURRENT_TIMESTAMP)
			FROM pg_locks l CROSS JOIN k LEFT JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
				AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
				AND l.classid::text::bigint = ((k.key >> 32) & 4294967295)
				AND l.objid::text::bigint = (k.key & 4294967295)
			LIMIT 1`, o.s.lockKey)
		if errors.Is(err, sql.ErrNoRows) {
			return a, nil
		}
		if err != nil {
			return a, fmt.Errorf("forwarder: active relay of outbox %s: %w", o.cfg.Name, err)
		}
		a.Active, a.Since = true, since.UTC()
		a.Holder = "pid " + strconv.FormatInt(pid, 10)
		if addr != "" {
			a.Holder += " from " + addr
		}
		if app != "" {
			a.Holder += ", application " + app
		}
	case MySQL:
		var id sql.NullInt64
		err := scanOne(ctx, o.db, []any{&id}, `SELECT IS_USED_LOCK(CONCAT('eventkit.', LEFT(SHA1(CONCAT(DATABASE(), '.', ?)), 40)))`, o.s.lockKey)
		if err != nil {
			return a, fmt.Errorf("forwarder: active relay of outbox %s: %w", o.cfg.Name, err)
		}
		if id.Valid {
			a.Active, a.Holder = true, "connection "+strconv.FormatInt(id.Int64, 10)
		}
	default:
		var owner string
		var expires int64
		err := scanOne(ctx, o.db, []any{&owner, &expires}, `SELECT "owner", "expires_at" FROM `+o.s.lease+` WHERE "id" = 1`)
		if errors.Is(err, sql.ErrNoRows) {
			return a, nil
		}
		if err != nil {
			return a, fmt.Errorf("forwarder: active relay of outbox %s: %w", o.cfg.Name, err)
		}
		if until := time.UnixMicro(expires); until.After(time.Now()) {
			a.Active, a.Holder, a.Until = true, "relay "+owner, until.UTC()
		}
	}
	return a, nil
}

// Batch is one batch a relay read and published.
type Batch struct {
	// At is when its publishing ended.
	At time.Time
	// Rows is how many rows it read; Confirmed how many of them the broker
	// confirmed (the others were rejected or met an outage).
	Rows, Confirmed int
	// Took is how long publishing it took.
	Took time.Duration
}

// RelayState is what a relay of this process is doing (Relay.State).
type RelayState struct {
	// Running reports whether Run is in progress.
	Running bool
	// Active reports whether this relay holds the outbox's lock (it is the
	// one publishing); a running relay that is not active stands by.
	Active bool
	// LastBatch is the last batch it published; zero before the first.
	LastBatch Batch
}

// State returns what the relay is doing, for status pages (package
// console). It is cheap and safe for concurrent use.
func (r *Relay) State() RelayState {
	st := RelayState{Running: r.running.Load(), Active: r.active.Load()}
	if b := r.lastBatch.Load(); b != nil {
		st.LastBatch = *b
	}
	return st
}

// Topics returns the distinct destination topics of the outbox's rows, in
// every state, sorted, at most limit of them (limit ≤ 0: 100). It reads the
// whole table: call it once, at start, not per request. Package console
// finds the dead-letter topics to show with it.
func (o *Outbox) Topics(ctx context.Context, limit int) ([]string, error) {
	if limit <= 0 {
		limit = 100
	}
	col := o.s.col("topic")
	rs, err := o.db.query(ctx, "SELECT DISTINCT "+col+" FROM "+o.s.table+" ORDER BY "+col+" LIMIT "+strconv.Itoa(limit))
	if err != nil {
		return nil, fmt.Errorf("forwarder: topics of outbox %s: %w", o.cfg.Name, err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var t string
		if err := rs.Scan(&t); err != nil {
			return nil, fmt.Errorf("forwarder: topics of outbox %s: %w", o.cfg.Name, err)
		}
		if t != "" {
			out = append(out, t)
		}
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("forwarder: topics of outbox %s: %w", o.cfg.Name, err)
	}
	return out, nil
}
