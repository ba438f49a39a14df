package middleware

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// Limits of InboxConfig.GroupTx.
const (
	// txGroupMax is the most members one group transaction takes. Each
	// member's savepoint is a subtransaction; PostgreSQL caches 64 of them
	// per transaction in shared memory, and a transaction with more makes
	// every other session's snapshots slower (subtransaction overflow).
	txGroupMax = 32
	// txGroupLanes is how many group transactions take members at once,
	// each on a connection of its own: the members of one group run one
	// after the other, the groups side by side.
	txGroupLanes = 4
)

// txGrouper runs the claims of a PostgreSQL inbox with InboxConfig.GroupTx:
// the claims in flight share a few transactions; each member of a group
// holds the group's connection from its claim to its Commit or Rollback
// (the members of a group run one after the other), in a savepoint of its
// own, so that a failed handler rolls back its writes only; the group
// commits once, when its last member has committed or rolled back.
//
// Guarantees, the same as one transaction per claim:
//   - a key, and the writes a member made in the group's transaction, are
//     recorded only if the member committed and the group's transaction
//     committed; Commit returns nil only then;
//   - a second claim of a key waits while the key is in a live group of
//     this inbox (in-process) or locked by another transaction (the row
//     lock), then sees it recorded or gets the claim.
type txGrouper struct {
	s    *SQLInbox
	next atomic.Uint32 // where the search for a lane starts

	mu   sync.Mutex
	open [txGroupLanes]*txGroup // the group each lane's claims join; nil: start one
	live map[InboxKey]*txGroup  // the group each claimed key is in
}

// txGroup is one shared transaction and its members.
type txGroup struct {
	tg   *txGrouper
	lane int
	turn chan struct{} // holds a token while nobody uses the connection

	// Guarded by tg.mu.
	joined, resolved, committed int
	sealed                      bool

	// Used by whoever holds the turn.
	conn   *groupConn
	seq    int
	broken error // the transaction failed: every member fails with it

	done chan struct{} // closed when the transaction ended
	err  error         // its outcome, read after done
}

// groupConn is the connection of a group and its transaction.
type groupConn struct {
	// run runs f with the pgx connection (pool: directly; database/sql:
	// through Conn.Raw).
	run   func(f func(*pgx.Conn) error) error
	sqlTx *sql.Tx // database/sql: begun with the connection, the handlers' view
	pgxTx pgx.Tx  // pool: begun by the first insert
	// close gives the connection back (rolling back what was not
	// committed), or drops it when broken.
	close func(broken bool)
}

func (c *groupConn) commit(ctx context.Context) error {
	if c.sqlTx != nil {
		return c.sqlTx.Commit()
	}
	return c.pgxTx.Commit(ctx) // ErrTxCommitRollback if it was aborted
}

func newTxGrouper(s *SQLInbox) *txGrouper {
	return &txGrouper{s: s, live: map[InboxKey]*txGroup{}}
}

func (tg *txGrouper) claim(ctx context.Context, key InboxKey) (InboxClaim, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("middleware: inbox claim: %w", err)
		}
		tg.mu.Lock()
		if held := tg.live[key]; held != nil {
			tg.mu.Unlock()
			select {
			case <-held.done:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("middleware: inbox claim: waiting for another delivery of event %q: %w", key.EventID, ctx.Err())
			}
		}
		lane := tg.lane()
		g := tg.open[lane]
		if g == nil {
			g = &txGroup{tg: tg, lane: lane, turn: make(chan struct{}, 1), done: make(chan struct{})}
			g.turn <- struct{}{}
			tg.open[lane] = g
		}
		g.joined++
		if g.joined == txGroupMax {
			g.seal()
		}
		tg.live[key] = g
		tg.mu.Unlock()
		return g.claim(ctx, key)
	}
}

// fail breaks the group: every member fails with err, and new claims go
// to another group. Called by the holder of the turn.
func (g *txGroup) fail(err error) {
	g.broken = fmt.Errorf("middleware: the group's transaction failed: %w", err)
	g.tg.mu.Lock()
	g.seal()
	g.tg.mu.Unlock()
}

// lane returns the lane whose open group has the fewest members yet to
// resolve (none open counts as none): a claim waits for the fewest, and a
// goroutine holding a claim while it makes another (not Deduplicate) finds
// a free lane while there is one. Called with tg.mu held.
func (tg *txGrouper) lane() int {
	start := int(tg.next.Add(1))
	best, bestLoad := 0, -1
	for i := range txGroupLanes {
		l := (start + i) % txGroupLanes
		load := 0
		if g := tg.open[l]; g != nil {
			load = g.joined - g.resolved
		}
		if bestLoad < 0 || load < bestLoad {
			best, bestLoad = l, load
		}
	}
	return best
}

// seal stops the group taking members. Called with tg.mu held.
func (g *txGroup) seal() {
	g.sealed = true
	if g.tg.open[g.lane] == g {
		g.tg.open[g.lane] = nil
	}
}

// claim waits for the turn, then inserts key in a savepoint of its own.
func (g *txGroup) claim(ctx context.Context, key InboxKey) (InboxClaim, error) {
	select {
	case <-g.turn:
	case <-ctx.Done():
		g.leave(key, false)
		return nil, fmt.Errorf("middleware: inbox claim: waiting for the group's transaction: %w", ctx.Err())
	}
	if g.broken != nil {
		g.release(key, false)
		return nil, g.broken
	}
	if err := ctx.Err(); err != nil {
		// It ended as the turn came: the group goes on without it.
		g.release(key, false)
		return nil, fmt.Errorf("middleware: inbox claim: waiting for the group's transaction: %w", err)
	}
	g.seq++
	m := &txMember{g: g, key: key, savepoint: "eventkit_m" + strconv.Itoa(g.seq)}
	inserted, err := g.insert(ctx, m)
	switch {
	case err != nil:
		g.release(key, false)
		return nil, fmt.Errorf("middleware: inbox claim: insert into %s: %w", g.tg.s.cfg.Table, err)
	case !inserted:
		g.release(key, false)
		return nil, ErrDuplicate
	}
	return m, nil
}

// insert begins the transaction if need be and inserts the member's key in
// its savepoint. An error of the member's own statement is rolled back to
// the savepoint; one the group cannot recover from breaks it.
//
// The end of ctx does not break the group: the insert (which may wait on
// the row lock of another process's claim) runs detached from ctx, and ctx
// ending cancels it with a cancel request, which fails that statement only
// (pgx's default on a cancelled context closes the connection, which would
// fail every member, those that succeeded included).
func (g *txGroup) insert(ctx context.Context, m *txMember) (bool, error) {
	s := g.tg.s
	begin := false
	if g.conn == nil {
		c, err := s.groupConn(ctx)
		if err != nil {
			// Nothing began: the next member tries again.
			return false, fmt.Errorf("begin: %w", err)
		}
		g.conn = c
		begin = c.sqlTx == nil // database/sql began it already
	}
	var inserted bool
	err := g.conn.run(func(c *pgx.Conn) error {
		stop := cancelOnDone(ctx, c.PgConn())
		tx, ok, err := pipelineInsert(context.WithoutCancel(ctx), c, begin, m.savepoint, s.insertQ, m.key, time.Now())
		stop()
		inserted = ok
		if begin {
			g.conn.pgxTx = tx
		}
		if err == nil {
			return nil
		}
		if c.IsClosed() || c.PgConn().TxStatus() != 'E' {
			return err
		}
		// The transaction is there and the member's statement failed:
		// undo the member only (a failed BEGIN or SAVEPOINT makes this
		// fail too, and then the group).
		rctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
		defer cancel()
		if _, rerr := c.Exec(rctx, "ROLLBACK TO SAVEPOINT "+m.savepoint); rerr != nil {
			return errors.Join(err, rerr)
		}
		m.undone = true
		if ctx.Err() != nil {
			return fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return err
	})
	if err != nil && !m.undone {
		g.fail(err)
	}
	return inserted, err
}

// cancelOnDone sends conn a cancel request (the statement running fails,
// the connection and its transaction stay) if ctx ends before stop is
// called; stop returns once no request is on its way.
func cancelOnDone(ctx context.Context, conn *pgconn.PgConn) (stop func()) {
	if ctx.Done() == nil {
		return func() {}
	}
	sent := make(chan struct{})
	after := context.AfterFunc(ctx, func() {
		defer close(sent)
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.CancelRequest(cctx)
	})
	return func() {
		if !after() {
			<-sent
		}
	}
}

// groupConn opens the connection of a group. With database/sql it begins
// the transaction (the handlers' *sql.Tx); with a pool the first insert
// begins it.
func (s *SQLInbox) groupConn(ctx context.Context) (*groupConn, error) {
	if s.pool != nil {
		pc, err := s.pool.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		c := pc.Conn()
		gc := &groupConn{run: func(f func(*pgx.Conn) error) error { return f(c) }}
		gc.close = func(broken bool) {
			ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
			defer cancel()
			if broken {
				_ = c.Close(ctx)
			} else if gc.pgxTx != nil {
				_ = gc.pgxTx.Rollback(ctx) // ErrTxClosed once committed
			}
			pc.Release() // the pool destroys a connection closed or left in a transaction
		}
		return gc, nil
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := conn.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return &groupConn{
		run: func(f func(*pgx.Conn) error) error {
			return conn.Raw(func(dc any) error {
				sc, ok := dc.(*stdlib.Conn)
				if !ok {
					return fmt.Errorf("InboxConfig.GroupTx needs the pgx driver, not %T", dc)
				}
				return f(sc.Conn())
			})
		},
		sqlTx: tx,
		close: func(broken bool) {
			_ = tx.Rollback() // a no-op once committed; first: the Tx holds the Conn
			if broken {
				_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			}
			_ = conn.Close()
		},
	}, nil
}

// release gives the turn back and resolves a member that holds no row.
func (g *txGroup) release(key InboxKey, committed bool) {
	g.turn <- struct{}{}
	g.leave(key, committed)
}

// leave resolves a member; the last one ends the group. A member that did
// not commit holds no row (its savepoint was rolled back, or it never
// inserted), so its key is free at once.
func (g *txGroup) leave(key InboxKey, committed bool) {
	tg := g.tg
	tg.mu.Lock()
	g.resolved++
	if committed {
		g.committed++
	} else if tg.live[key] == g {
		delete(tg.live, key)
	}
	end := g.resolved == g.joined
	if end {
		g.seal()
	}
	tg.mu.Unlock()
	if end {
		g.end()
	}
}

// end ends the group's transaction: it commits when a member committed and
// the transaction is sound, rolls back otherwise, then frees the keys and
// wakes the members waiting in Commit.
func (g *txGroup) end() {
	<-g.turn // every member resolved: nobody else takes it now
	var err error
	broken := false
	if g.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
		switch {
		case g.broken != nil:
			err = g.broken
			broken = true
		case g.committed == 0: // close rolls it back
		default:
			if err = g.conn.commit(ctx); err != nil {
				broken = true
				err = fmt.Errorf("middleware: inbox commit: %w", err)
			}
		}
		cancel()
		g.conn.close(broken)
	}
	tg := g.tg
	tg.mu.Lock()
	g.err = err
	for k, lg := range tg.live {
		if lg == g {
			delete(tg.live, k)
		}
	}
	tg.mu.Unlock()
	close(g.done)
}

// txMember is one member of a group, and the InboxClaim Claim returns. It
// holds the group's turn until Commit or Rollback.
type txMember struct {
	g         *txGroup
	key       InboxKey
	savepoint string
	undone    bool // the savepoint was rolled back
	resolved  bool
	pgxTx     *inboxPgxTx // the handler's view with a pgx pool, made on demand
}

// Tx returns the group's transaction with database/sql, for InTx handlers;
// nil with a pgx pool (PgxTx).
func (m *txMember) Tx() *sql.Tx { return m.g.conn.sqlTx }

// PgxTx returns the group's transaction with a pgx pool, for InTx
// handlers; nil with database/sql.
func (m *txMember) PgxTx() pgx.Tx {
	if m.g.conn.sqlTx != nil {
		return nil
	}
	if m.pgxTx == nil {
		m.pgxTx = newInboxPgxTx(m.g.conn.pgxTx)
	}
	return m.pgxTx
}

// Commit keeps the member's writes and records its key: it returns once the
// group's transaction has committed. A member whose handler left the
// transaction aborted (a statement failed) is rolled back to its savepoint
// instead and Commit returns an error.
func (m *txMember) Commit(ctx context.Context) error {
	if m.resolved {
		return errors.New("middleware: inbox commit: the claim was already committed or rolled back")
	}
	m.resolved = true
	m.pgxTx.close()
	g := m.g
	var aborted bool
	if g.broken == nil {
		err := g.conn.run(func(c *pgx.Conn) error {
			switch {
			case c.IsClosed():
				return errors.New("connection closed")
			case c.PgConn().TxStatus() == 'I':
				return errors.New("a handler ended the transaction")
			case c.PgConn().TxStatus() != 'E':
				return nil
			}
			aborted = true
			rctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
			defer cancel()
			_, err := c.Exec(rctx, "ROLLBACK TO SAVEPOINT "+m.savepoint)
			return err
		})
		if err != nil {
			g.fail(err)
		}
	}
	if broken := g.broken; broken != nil {
		g.release(m.key, false)
		return fmt.Errorf("middleware: inbox commit: %w", broken)
	}
	if aborted {
		g.release(m.key, false)
		return fmt.Errorf("middleware: inbox commit: a statement of the handler failed: %w", pgx.ErrTxCommitRollback)
	}
	g.release(m.key, true)
	select {
	case <-g.done:
		return g.err
	case <-ctx.Done():
		return fmt.Errorf("middleware: inbox commit: waiting for the group commit: %w", ctx.Err())
	}
}

// Rollback rolls the member's writes and key back to its savepoint; the
// group goes on.
func (m *txMember) Rollback() error {
	if m.resolved {
		return nil
	}
	m.resolved = true
	m.pgxTx.close()
	g := m.g
	if g.broken == nil {
		err := g.conn.run(func(c *pgx.Conn) error {
			ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
			defer cancel()
			_, err := c.Exec(ctx, "ROLLBACK TO SAVEPOINT "+m.savepoint)
			return err
		})
		if err != nil {
			g.fail(err)
		}
	}
	g.release(m.key, false)
	return nil
}
