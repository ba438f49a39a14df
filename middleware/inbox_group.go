package middleware

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// groupInsertMax is the most claims one INSERT statement of a group carries.
const groupInsertMax = 100

// groupCommitter runs the claims of a PostgreSQL inbox with
// InboxConfig.GroupCommit: the claims made while a group is open share one
// transaction, whose rows are inserted by one multi-row statement per wave
// of claims and committed once every member has committed or rolled back.
//
// Guarantees, the same as one transaction per claim:
//   - a key is recorded only if its claim committed: a rolled-back member's
//     row is deleted in the group's transaction before it commits;
//   - Commit returns nil only once the group's transaction has committed;
//   - a second claim of a key waits while the key is in a live group of
//     this inbox (in-process) or locked by another process's transaction
//     (the row lock), then sees it recorded or gets the claim.
type groupCommitter struct {
	s *SQLInbox

	mu   sync.Mutex
	open *group              // the group new claims join; nil or sealed: start one
	live map[InboxKey]*group // the group each key being claimed or held is in
	// inserts caches the INSERT statement for each number of rows.
	inserts map[int]string
}

// group is one shared transaction and the claims in it.
type group struct {
	gc *groupCommitter

	// Guarded by gc.mu.
	members    []*groupClaim
	pending    []*groupClaim // not inserted yet
	inserting  bool          // a member runs the inserts (and owns tx)
	sealed     bool          // no new members: a member resolved, or the group broke
	unresolved int           // members that may still be inserted, commit or roll back
	committed  int           // members that committed
	failed     []InboxKey    // rows inserted for members that rolled back
	broken     error         // the transaction failed: every member fails with it
	ending     bool          // end was called or is due
	tx         *sql.Tx

	done chan struct{} // closed when the group's transaction ended
	err  error         // its outcome, read after done
}

// groupClaim is one member of a group, and the InboxClaim Claim returns.
type groupClaim struct {
	g   *group
	key InboxKey
	res chan error // the insert's outcome for this claim: nil, ErrDuplicate or an error

	// Guarded by g.gc.mu.
	held bool // inserted and not yet committed or rolled back
	// abandoned: the claimer left before the insert's outcome (its context
	// ended); the outcome releases the claim.
	abandoned bool
	wave      *wave // the insert carrying the claim, once it runs
}

// wave is one INSERT statement of a group and the claimers waiting on it.
type wave struct {
	waiting int                // members not abandoned; guarded by gc.mu
	cancel  context.CancelFunc // ends the statement once nobody waits
}

func newGroupCommitter(s *SQLInbox) *groupCommitter {
	return &groupCommitter{s: s, live: map[InboxKey]*group{}, inserts: map[int]string{}}
}

func (gc *groupCommitter) claim(ctx context.Context, key InboxKey) (InboxClaim, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("middleware: inbox claim: %w", err)
		}
		gc.mu.Lock()
		if held := gc.live[key]; held != nil {
			// Another claim of this key is in a live group: wait for the
			// group's transaction to end, then claim again (recorded:
			// ErrDuplicate; released: the claim).
			gc.mu.Unlock()
			select {
			case <-held.done:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("middleware: inbox claim: waiting for another delivery of event %q: %w", key.EventID, ctx.Err())
			}
		}
		g := gc.open
		if g == nil || g.sealed {
			g = &group{gc: gc, done: make(chan struct{})}
			gc.open = g
		}
		c := &groupClaim{g: g, key: key, res: make(chan error, 1)}
		g.members = append(g.members, c)
		g.pending = append(g.pending, c)
		g.unresolved++
		gc.live[key] = g
		lead := !g.inserting
		g.inserting = true
		gc.mu.Unlock()

		if lead {
			go g.insertAll()
		}
		select {
		case err := <-c.res:
			if err != nil {
				return nil, err
			}
			return c, nil
		case <-ctx.Done():
			return nil, c.abandon(ctx.Err())
		}
	}
}

// abandon gives up waiting for the insert's outcome. If the outcome came
// meanwhile and was a claim, the claim is rolled back. The last claimer to
// leave a running insert cancels it: a statement waiting on another
// transaction's row lock then stops (and the group breaks).
func (c *groupClaim) abandon(cause error) error {
	gc := c.g.gc
	gc.mu.Lock()
	select {
	case err := <-c.res:
		gc.mu.Unlock()
		if err == nil {
			_ = c.Rollback()
		}
	default:
		c.abandoned = true
		if w := c.wave; w != nil {
			if w.waiting--; w.waiting == 0 {
				w.cancel()
			}
		}
		gc.mu.Unlock()
	}
	return fmt.Errorf("middleware: inbox claim: %w", cause)
}

// insertAll inserts the group's pending claims, wave by wave, until none is
// left, then ends the group if it is due. One goroutine runs it at a time
// per group (g.inserting).
func (g *group) insertAll() {
	gc := g.gc
	for {
		gc.mu.Lock()
		n := min(len(g.pending), groupInsertMax)
		if n == 0 {
			g.inserting = false
			end := g.endable()
			gc.mu.Unlock()
			if end {
				g.end()
			}
			return
		}
		batch := g.pending[:n:n]
		g.pending = g.pending[n:]
		ctx, cancel := context.WithCancel(context.Background())
		w := &wave{cancel: cancel}
		for _, c := range batch {
			c.wave = w
			if !c.abandoned {
				w.waiting++
			}
		}
		broken := g.broken
		skip := w.waiting == 0 // every claimer of the wave left already
		gc.mu.Unlock()

		var inserted map[InboxKey]bool
		err := broken
		if err == nil && !skip {
			inserted, err = g.insert(ctx, batch)
		}
		cancel()

		gc.mu.Lock()
		if err != nil && g.broken == nil {
			// A failed or cancelled statement leaves the transaction
			// unusable: the group fails as a whole.
			g.broken = err
			g.seal()
		}
		for _, c := range batch {
			var res error
			switch {
			case err != nil:
				res = err
			case !inserted[c.key]:
				res = ErrDuplicate
			}
			switch {
			case res == nil && !c.abandoned:
				c.held = true
			case res == nil: // inserted, but nobody will commit it
				g.failed = append(g.failed, c.key)
				g.unresolved--
			default: // no row: the key is free for other claims now
				g.unresolved--
				if gc.live[c.key] == g {
					delete(gc.live, c.key)
				}
			}
			if !c.abandoned {
				c.res <- res
			}
		}
		gc.mu.Unlock()
	}
}

// insert begins the group's transaction if need be and inserts the keys of
// wave in it, returning those that were not recorded before.
func (g *group) insert(ctx context.Context, wave []*groupClaim) (map[InboxKey]bool, error) {
	s := g.gc.s
	if g.tx == nil {
		// The transaction serves many messages: no single message's
		// context, nor the wave's, may end it.
		tx, err := s.db.BeginTx(context.Background(), nil)
		if err != nil {
			return nil, fmt.Errorf("middleware: inbox claim: begin: %w", err)
		}
		g.tx = tx
	}
	inserted, err := g.insertRows(ctx, wave)
	if err != nil {
		return nil, fmt.Errorf("middleware: inbox claim: insert into %s: %w", s.cfg.Table, err)
	}
	return inserted, nil
}

func (g *group) insertRows(ctx context.Context, wave []*groupClaim) (map[InboxKey]bool, error) {
	args := make([]any, 0, 1+2*len(wave))
	args = append(args, g.gc.s.timeArg(time.Now()))
	for _, c := range wave {
		args = append(args, c.key.Handler, c.key.EventID)
	}
	rows, err := g.tx.QueryContext(ctx, g.gc.insertQuery(len(wave)), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	inserted := make(map[InboxKey]bool, len(wave))
	for rows.Next() {
		var k InboxKey
		if err := rows.Scan(&k.Handler, &k.EventID); err != nil {
			return nil, err
		}
		inserted[k] = true
	}
	return inserted, rows.Err()
}

// insertQuery returns the INSERT of n keys: $1 is the time, then handler and
// event id of each key.
func (gc *groupCommitter) insertQuery(n int) string {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	if q, ok := gc.inserts[n]; ok {
		return q
	}
	var b strings.Builder
	b.WriteString("INSERT INTO " + gc.s.cfg.Table + " (handler, event_id, processed_at) VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("($" + strconv.Itoa(2+2*i) + ", $" + strconv.Itoa(3+2*i) + ", $1)")
	}
	b.WriteString(" ON CONFLICT DO NOTHING RETURNING handler, event_id")
	q := b.String()
	gc.inserts[n] = q
	return q
}

// seal stops the group taking members. Called with gc.mu held.
func (g *group) seal() {
	g.sealed = true
	if g.gc.open == g {
		g.gc.open = nil
	}
}

// endable reports whether the group's transaction must end now: every
// member resolved and no insert runs. It then seals the group and marks it
// ending, so that exactly one caller, the one that saw true, calls end.
// Called with gc.mu held.
func (g *group) endable() bool {
	if g.ending || g.unresolved > 0 || g.inserting {
		return false
	}
	g.seal()
	g.ending = true
	return true
}

// end ends the group's transaction: it deletes the rows of rolled-back
// members and commits, or rolls back when no member committed or the
// transaction broke. Then it releases the group's keys and wakes the
// members waiting in Commit and the claims waiting for those keys.
func (g *group) end() {
	gc := g.gc
	var err error
	switch {
	case g.tx == nil: // the begin failed; its error went to the claims
	case g.broken != nil:
		err = fmt.Errorf("middleware: inbox commit: the group's transaction failed: %w", g.broken)
		_ = g.tx.Rollback()
	case g.committed == 0:
		_ = g.tx.Rollback()
	default:
		err = g.commit()
	}
	gc.mu.Lock()
	g.err = err
	for _, c := range g.members {
		if gc.live[c.key] == g {
			delete(gc.live, c.key)
		}
	}
	gc.mu.Unlock()
	close(g.done)
}

func (g *group) commit() error {
	s := g.gc.s
	ctx := context.Background()
	if len(g.failed) > 0 {
		var b strings.Builder
		b.WriteString("DELETE FROM " + s.cfg.Table + " WHERE (handler, event_id) IN (")
		args := make([]any, 0, 2*len(g.failed))
		for i, k := range g.failed {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("($" + strconv.Itoa(1+2*i) + ", $" + strconv.Itoa(2+2*i) + ")")
			args = append(args, k.Handler, k.EventID)
		}
		b.WriteString(")")
		if _, err := g.tx.ExecContext(ctx, b.String(), args...); err != nil {
			_ = g.tx.Rollback()
			return fmt.Errorf("middleware: inbox commit: delete the rolled-back keys from %s: %w", s.cfg.Table, err)
		}
	}
	if err := g.tx.Commit(); err != nil {
		return fmt.Errorf("middleware: inbox commit: %w", err)
	}
	return nil
}

// resolve records the member's outcome (Commit or Rollback) and seals the
// group; it reports whether the caller must end the group.
func (c *groupClaim) resolve(commit bool) (end bool, ok bool) {
	g := c.g
	g.gc.mu.Lock()
	defer g.gc.mu.Unlock()
	if !c.held {
		return false, false
	}
	c.held = false
	if commit {
		g.committed++
	} else {
		g.failed = append(g.failed, c.key)
	}
	g.unresolved--
	g.seal()
	return g.endable(), true
}

// Tx returns nil: the group's transaction is shared by its members.
func (c *groupClaim) Tx() *sql.Tx { return nil }

// Commit records the key: it returns once the group's transaction, which
// ends when its last member commits or rolls back, has committed.
func (c *groupClaim) Commit(ctx context.Context) error {
	end, ok := c.resolve(true)
	if !ok {
		return errors.New("middleware: inbox commit: the claim was already committed or rolled back")
	}
	if end {
		c.g.end()
	}
	select {
	case <-c.g.done:
		return c.g.err
	case <-ctx.Done():
		return fmt.Errorf("middleware: inbox commit: waiting for the group commit: %w", ctx.Err())
	}
}

// Rollback releases the claim: the key is not recorded. It does not wait
// for the group's transaction; a new claim of the key waits for it.
func (c *groupClaim) Rollback() error {
	if end, ok := c.resolve(false); ok && end {
		c.g.end()
	}
	return nil
}
