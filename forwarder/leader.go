package forwarder

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

const closeTimeout = 5 * time.Second

// errLeaseLost ends a term when another relay holds the SQLite lease.
var errLeaseLost = errors.New("lease lost to another relay")

// leader is one term of a relay as the active relay of its outbox. Only the
// active relay reads and publishes, so relays on one outbox never publish
// the same rows in normal operation, and order is kept.
//
// PostgreSQL and MySQL hold a session lock (pg_try_advisory_lock, GET_LOCK)
// on a dedicated connection and run every statement of the term on it: if
// the connection dies, the lock goes with it and the term ends at the next
// statement. A killed relay's lock is freed when its connection closes, and
// a standby takes over at its next try. SQLite has no session locks: a
// lease row with an expiry, renewed while the relay runs.
type leader struct {
	q      querier
	sess   session // nil on SQLite
	listen bool
	renew  func(ctx context.Context) error // SQLite; nil otherwise
	free   func()
}

func (l *leader) drain() {
	if l.listen {
		l.sess.drainNotifications()
	}
}

// acquire makes r the active relay of its outbox, or returns nil when
// another relay is active.
func (r *Relay) acquire(ctx context.Context) (*leader, error) {
	switch r.ob.cfg.Dialect {
	case Postgres:
		return r.acquireSession(ctx, r.ob.s.relayLock, r.ob.s.relayUnlock, nil)
	case MySQL:
		return r.acquireSession(ctx, r.ob.s.relayLock, r.ob.s.relayUnlock,
			[]string{
				// No gap locks for the relay's locking reads, and a short wait
				// for rows of transactions still in flight (then it reads again).
				`SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED`,
				`SET SESSION innodb_lock_wait_timeout = 2`,
			})
	default:
		return r.acquireLease(ctx)
	}
}

func (r *Relay) acquireSession(ctx context.Context, lock, unlock string, init []string) (*leader, error) {
	sess, err := r.ob.db.session(ctx)
	if err != nil {
		return nil, err
	}
	var got sql.NullBool
	if err := scanOne(ctx, sess, []any{&got}, lock, r.ob.s.lockKey); err != nil {
		sess.close(true)
		return nil, err
	}
	if !got.Bool {
		sess.close(false)
		return nil, nil
	}
	l := &leader{q: sess, sess: sess}
	l.free = func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		_, err := sess.exec(ctx, unlock, r.ob.s.lockKey)
		// Session settings and LISTEN stay on the connection: never pool it.
		sess.close(true)
		if err != nil {
			r.log.Debug("eventkit: relay unlock failed; connection discarded", slogErr(err))
		}
	}
	if err := execAll(ctx, sess, init); err != nil {
		l.free()
		return nil, err
	}
	if r.ob.cfg.Dialect == Postgres && sess.canListen() {
		if _, err := sess.exec(ctx, `LISTEN "`+r.ob.s.channel+`"`); err != nil {
			l.free()
			return nil, err
		}
		l.listen = true
	}
	return l, nil
}

func (r *Relay) acquireLease(ctx context.Context) (*leader, error) {
	s := r.ob.s
	take := func(ctx context.Context) (bool, error) {
		now := time.Now()
		n, err := r.ob.db.exec(ctx, `INSERT INTO `+s.lease+` ("id", "owner", "expires_at") VALUES (1, ?, ?)
			ON CONFLICT ("id") DO UPDATE SET "owner" = excluded."owner", "expires_at" = excluded."expires_at"
			WHERE `+s.lease+`."owner" = excluded."owner" OR `+s.lease+`."expires_at" < ?`,
			r.id, now.Add(r.cfg.LeaseTTL).UnixMicro(), now.UnixMicro())
		return n == 1, err
	}
	ok, err := take(ctx)
	if err != nil {
		if isBusy(err) {
			return nil, nil
		}
		return nil, err
	}
	if !ok {
		return nil, nil
	}
	renewed := time.Now()
	l := &leader{q: r.ob.db}
	l.renew = func(ctx context.Context) error {
		if time.Since(renewed) < r.cfg.LeaseTTL/3 {
			return nil
		}
		ok, err := take(ctx)
		switch {
		case err != nil && isBusy(err) && time.Since(renewed) < r.cfg.LeaseTTL/2:
			return nil // try again on the next round, well before expiry
		case err != nil:
			return fmt.Errorf("renew lease: %w", err)
		case !ok:
			return errLeaseLost
		}
		renewed = time.Now()
		return nil
	}
	l.free = func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		err := retryBusy(ctx, func() error {
			_, err := r.ob.db.exec(ctx, `UPDATE `+s.lease+` SET "expires_at" = 0 WHERE "id" = 1 AND "owner" = ?`, r.id)
			return err
		})
		if err != nil {
			r.log.Debug("eventkit: relay lease release failed; it expires on its own", slogErr(err))
		}
	}
	return l, nil
}
