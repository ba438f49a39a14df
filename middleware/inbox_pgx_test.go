package middleware_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
)

// pgMode is one way of running a PostgreSQL inbox beside the plain
// database/sql one of sqlBackends.
type pgMode struct {
	name    string
	pool    bool // NewPostgresInboxPool, else database/sql with the pgx driver
	groupTx bool // InboxConfig.GroupTx
}

var pgModes = []pgMode{
	{name: "postgres-pool", pool: true},
	{name: "postgres-grouptx", groupTx: true},
	{name: "postgres-pool-grouptx", pool: true, groupTx: true},
}

var groupTxModes = []pgMode{pgModes[1], pgModes[2]}

// newPGInbox sets up an inbox in mode m in a table of its own, its
// connections named app (application_name) unless app is empty, and
// returns it with a database/sql handle of its own for the test's checks.
func newPGInbox(t testing.TB, m pgMode, cfg middleware.InboxConfig, app string) (*middleware.SQLInbox, *sql.DB) {
	t.Helper()
	admin := openDB(t, "PostgreSQL", "pgx", testenv.PostgresURL())
	if cfg.Table == "" {
		cfg.Table = testenv.Name(t, "inbox")
	}
	cfg.GroupTx = m.groupTx
	url := testenv.PostgresURL()
	if app != "" {
		url += "&application_name=" + app
	}
	var inbox *middleware.SQLInbox
	var err error
	if m.pool {
		pcfg, perr := pgxpool.ParseConfig(url)
		require.NoError(t, perr)
		pcfg.MaxConns = 24
		pool, perr := pgxpool.NewWithConfig(context.Background(), pcfg)
		require.NoError(t, perr)
		t.Cleanup(pool.Close)
		inbox, err = middleware.NewPostgresInboxPool(pool, cfg)
		if err == nil {
			t.Cleanup(func() { require.NoError(t, inbox.Close()) })
		}
	} else {
		db := admin
		if app != "" {
			db = openDB(t, "PostgreSQL", "pgx", url)
		}
		inbox, err = middleware.NewPostgresInbox(db, cfg)
	}
	require.NoError(t, err)
	require.Equal(t, m.groupTx, inbox.GroupTx())
	require.NoError(t, inbox.Setup(context.Background()))
	t.Cleanup(func() { _, _ = admin.Exec("DROP TABLE IF EXISTS " + inbox.Table()) })
	return inbox, admin
}

// claimTx runs q in the transaction of claim c: its *sql.Tx, or its pgx
// one (an inbox on a pool).
func claimTx(ctx context.Context, c middleware.InboxClaim, q string, args ...any) error {
	if tx := c.Tx(); tx != nil {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}
	if p, ok := c.(interface{ PgxTx() pgx.Tx }); ok && p.PgxTx() != nil {
		_, err := p.PgxTx().Exec(ctx, q, args...)
		return err
	}
	return errors.New("the claim has no transaction")
}

// claimXact returns the top-level transaction id the claim's statements
// run in.
func claimXact(ctx context.Context, c middleware.InboxClaim) (string, error) {
	var id string
	if tx := c.Tx(); tx != nil {
		return id, tx.QueryRowContext(ctx, "SELECT pg_current_xact_id()::text").Scan(&id)
	}
	if p, ok := c.(interface{ PgxTx() pgx.Tx }); ok && p.PgxTx() != nil {
		return id, p.PgxTx().QueryRow(ctx, "SELECT pg_current_xact_id()::text").Scan(&id)
	}
	return "", errors.New("the claim has no transaction")
}

// ctxTx runs q in the inbox transaction an InTx handler gets from ctx.
func ctxTx(ctx context.Context, q string, args ...any) error {
	if tx, ok := middleware.TxFromContext(ctx); ok {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}
	if tx, ok := middleware.PgxTxFromContext(ctx); ok {
		_, err := tx.Exec(ctx, q, args...)
		return err
	}
	return errors.New("no inbox transaction in the context")
}

func rowCount(t *testing.T, db *sql.DB, q string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow(q, args...).Scan(&n))
	return n
}

// TestPgModesInTx is TestDeduplicateInTx for each PostgreSQL mode: the
// handler's write and its inbox row roll back together on failure and
// commit together on success; a redelivery does not run the handler again.
func TestPgModesInTx(t *testing.T) {
	t.Parallel()
	for _, m := range pgModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			reg := newRegistry(t)
			tr := newMemory(t)
			inbox, db := newPGInbox(t, m, middleware.InboxConfig{}, "")
			biz := createTable(t, db, "CREATE TABLE %s (order_id TEXT NOT NULL, attempt INTEGER NOT NULL)")
			d := newDedup(t, inbox, true)
			retry := fastRetry(t, middleware.RetryConfig{MaxAttempts: 3})
			topic := testenv.Name(t, "orders")
			calls, inc := counter()
			sub, err := tr.Subscriber("g")
			require.NoError(t, err)
			viewErrs := make(chan error, 4)
			runRouter(t, sub, "inventory.reserve", topic, func(msg *message.Message) error {
				inc()
				ctx := msg.Context()
				if m.pool {
					tx, ok := middleware.PgxTxFromContext(ctx)
					if _, sqlOK := middleware.TxFromContext(ctx); !ok || sqlOK {
						return errors.New("an inbox on a pool gives a pgx transaction only")
					}
					viewErrs <- errors.Join(tx.Commit(ctx), tx.Rollback(ctx))
				}
				attempt := middleware.AttemptFromContext(ctx)
				if err := ctxTx(ctx, "INSERT INTO "+biz+" (order_id, attempt) VALUES ($1, $2)", msg.UUID, attempt); err != nil {
					return err
				}
				if attempt == 1 {
					return errBoom // after writing: the write must roll back
				}
				return nil
			}, retry.Middleware, d.Middleware)

			in := newEvent(t, reg, "o-1")
			require.NoError(t, tr.Publisher().Publish(topic, in))
			key := middleware.InboxKey{Handler: "inventory.reserve", EventID: in.UUID}
			require.Eventually(t, func() bool { return contains(t, inbox, key) }, 10*time.Second, 5*time.Millisecond)
			require.NoError(t, tr.Publisher().Publish(topic, in.Copy(), in.Copy()))
			require.Eventually(t, func() bool { return d.Duplicates() == 2 }, 10*time.Second, 5*time.Millisecond)
			require.Equal(t, 2, calls(), "one failed attempt, one success, no run for the duplicates")
			require.Equal(t, 1, rowCount(t, db, "SELECT count(*) FROM "+biz+" WHERE attempt = 2"))
			require.Equal(t, 1, rowCount(t, db, "SELECT count(*) FROM "+biz), "the failed attempt's write was rolled back with its inbox row")
			require.Equal(t, 1, rowCount(t, db, "SELECT count(*) FROM "+inbox.Table()+" WHERE handler = $1 AND event_id = $2", key.Handler, key.EventID))
			if m.pool {
				for range 2 {
					err := <-viewErrs
					require.ErrorIs(t, err, middleware.ErrInboxTx, "a handler cannot end the inbox transaction")
				}
			}
		})
	}
}

// TestPgModesConfig checks the combinations NewPostgresInbox(Pool) refuse.
func TestPgModesConfig(t *testing.T) {
	t.Parallel()
	_, err := middleware.NewPostgresInboxPool(nil, middleware.InboxConfig{})
	require.ErrorContains(t, err, "pool is nil")
	_, err = middleware.NewMySQLInbox(&sqlDBPlaceholder, middleware.InboxConfig{GroupTx: true})
	require.ErrorContains(t, err, "GroupTx is supported with PostgreSQL only")
	_, err = middleware.NewPostgresInbox(&sqlDBPlaceholder, middleware.InboxConfig{GroupTx: true, GroupCommit: true})
	require.ErrorContains(t, err, "exclude each other")
	mysqlDB, err := sql.Open("mysql", "u:p@tcp(127.0.0.1:1)/x")
	require.NoError(t, err)
	defer mysqlDB.Close()
	_, err = middleware.NewPostgresInbox(mysqlDB, middleware.InboxConfig{GroupTx: true})
	require.ErrorContains(t, err, "needs the pgx driver")
	s, err := middleware.NewPostgresInbox(&sqlDBPlaceholder, middleware.InboxConfig{})
	require.NoError(t, err)
	require.False(t, s.GroupTx(), "off by default")
}

// TestGroupTxSavepointIsolation: claims in flight share group
// transactions; in each group the first member fails its handler (rolled
// back), the second has a statement fail and still asks to commit (refused,
// rolled back), the others commit. Only the failed members' writes and keys
// are undone, and they share a transaction with members that committed.
func TestGroupTxSavepointIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, m := range groupTxModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			inbox, db := newPGInbox(t, m, middleware.InboxConfig{}, "")
			biz := createTable(t, db, "CREATE TABLE %s (id TEXT PRIMARY KEY)")
			const n = 16
			var mu sync.Mutex
			position := map[string]int{} // members seen per group transaction
			outcome := make([]string, n)
			xacts := make([]string, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					id := "e-" + strconv.Itoa(i)
					c, err := inbox.Claim(ctx, middleware.InboxKey{Handler: "h", EventID: id})
					if err != nil {
						outcome[i] = "claim: " + err.Error()
						return
					}
					xact, err := claimXact(ctx, c)
					if err != nil {
						outcome[i] = "xact: " + err.Error()
						_ = c.Rollback()
						return
					}
					mu.Lock()
					pos := position[xact]
					position[xact]++
					mu.Unlock()
					xacts[i] = xact
					if err := claimTx(ctx, c, "INSERT INTO "+biz+" (id) VALUES ($1)", id); err != nil {
						outcome[i] = "write: " + err.Error()
						_ = c.Rollback()
						return
					}
					time.Sleep(10 * time.Millisecond) // the others join meanwhile
					switch pos {
					case 0:
						require.NoError(t, c.Rollback())
						outcome[i] = "rolled back"
					case 1:
						require.Error(t, claimTx(ctx, c, "SELECT 1/0"))
						if err := c.Commit(ctx); err != nil {
							outcome[i] = "refused"
						} else {
							outcome[i] = "committed after a failed statement"
						}
					default:
						if err := c.Commit(ctx); err != nil {
							outcome[i] = "commit: " + err.Error()
						} else {
							outcome[i] = "committed"
						}
					}
					if p, ok := c.(interface{ PgxTx() pgx.Tx }); ok && m.pool {
						_, err := p.PgxTx().Exec(ctx, "SELECT 1")
						require.ErrorIs(t, err, pgx.ErrTxClosed, "a member's view closes when it ends")
					}
				}()
			}
			close(start)
			wg.Wait()

			shared := false
			committedIn := map[string]bool{}
			for i := range n {
				if outcome[i] == "committed" {
					committedIn[xacts[i]] = true
				}
			}
			for i := range n {
				id := "e-" + strconv.Itoa(i)
				k := middleware.InboxKey{Handler: "h", EventID: id}
				row := rowCount(t, db, "SELECT count(*) FROM "+biz+" WHERE id = $1", id)
				switch outcome[i] {
				case "committed":
					require.Equal(t, 1, row, "%s: a committed member's write stays", id)
					require.True(t, contains(t, inbox, k))
				case "rolled back", "refused":
					require.Zero(t, row, "%s (%s): its write is undone", id, outcome[i])
					require.False(t, contains(t, inbox, k), "%s: its key is free", id)
					shared = shared || committedIn[xacts[i]]
					c, err := inbox.Claim(ctx, k)
					require.NoError(t, err, "a failed member's key can be claimed again")
					require.NoError(t, c.Commit(ctx))
				default:
					t.Fatalf("%s: %s", id, outcome[i])
				}
			}
			var sizes []int
			for _, p := range position {
				sizes = append(sizes, p)
			}
			t.Logf("%d members in group transactions of %v members", n, sizes)
			require.True(t, shared, "a failed member shared its transaction with a committed one")
		})
	}
}

// fillLanes claims one key per lane of a GroupTx inbox: each holds its
// group's connection, so the next claims join those groups and wait.
func fillLanes(t *testing.T, ctx context.Context, inbox *middleware.SQLInbox, biz, prefix string) []middleware.InboxClaim {
	t.Helper()
	var claims []middleware.InboxClaim
	for i := range 4 {
		id := prefix + strconv.Itoa(i)
		c, err := inbox.Claim(ctx, middleware.InboxKey{Handler: "h", EventID: id})
		require.NoError(t, err)
		require.NoError(t, claimTx(ctx, c, "INSERT INTO "+biz+" (id) VALUES ($1)", id))
		claims = append(claims, c)
	}
	return claims
}

// TestGroupTxConnectionTerminated kills the group transactions'
// connections (pg_terminate_backend) while each group has a member that
// wrote and members waiting: every member fails, the keys are retried, and
// each effect is there once.
func TestGroupTxConnectionTerminated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, m := range groupTxModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			app := testenv.Name(t, "gtx")
			inbox, admin := newPGInbox(t, m, middleware.InboxConfig{}, app)
			biz := createTable(t, admin, "CREATE TABLE %s (id TEXT PRIMARY KEY)")
			first := fillLanes(t, ctx, inbox, biz, "a-")
			waiting := make(chan error, 4)
			for i := range 4 {
				go func() {
					id := "b-" + strconv.Itoa(i)
					c, err := inbox.Claim(ctx, middleware.InboxKey{Handler: "h", EventID: id})
					if err == nil {
						err = errors.Join(errors.New("a waiting member got its claim"), c.Rollback())
					}
					waiting <- err
				}()
			}
			time.Sleep(200 * time.Millisecond) // the waiting claims have joined the groups
			var killed int
			require.NoError(t, admin.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE application_name = $1 AND state = 'idle in transaction'`, app).Scan(&killed))
			require.Equal(t, 4, killed, "four group transactions")

			commits := make(chan error, 4)
			for _, c := range first {
				go func() { commits <- c.Commit(ctx) }()
			}
			for range 4 {
				require.Error(t, <-commits, "a member of a broken group does not commit")
				require.ErrorContains(t, <-waiting, "middleware: ", "a waiting member of a broken group fails")
			}
			require.Zero(t, rowCount(t, admin, "SELECT count(*) FROM "+biz), "nothing of the broken groups is kept")
			require.Zero(t, rowCount(t, admin, "SELECT count(*) FROM "+inbox.Table()))

			// The retries: each key until it commits.
			for _, p := range []string{"a-", "b-"} {
				for i := range 4 {
					id := p + strconv.Itoa(i)
					var err error
					for range 5 {
						var c middleware.InboxClaim
						if c, err = inbox.Claim(ctx, middleware.InboxKey{Handler: "h", EventID: id}); err != nil {
							continue // a pooled connection killed with the others
						}
						if err = claimTx(ctx, c, "INSERT INTO "+biz+" (id) VALUES ($1)", id); err != nil {
							_ = c.Rollback()
							continue
						}
						if err = c.Commit(ctx); err == nil {
							break
						}
					}
					require.NoError(t, err, id)
				}
			}
			require.Equal(t, 8, rowCount(t, admin, "SELECT count(*) FROM "+biz), "each effect once")
			require.Equal(t, 8, rowCount(t, admin, "SELECT count(*) FROM "+inbox.Table()))
		})
	}
}

// TestGroupTxCommitSurvivesOtherMembersEnding: members that succeeded
// commit although other members of their groups give up because their
// message contexts end (a router closing): one while its insert waits on
// the row lock of a key another process holds, others while they wait for
// their group's connection.
func TestGroupTxCommitSurvivesOtherMembersEnding(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, m := range groupTxModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			inbox, admin := newPGInbox(t, m, middleware.InboxConfig{}, "")
			other, err := middleware.NewPostgresInbox(admin, middleware.InboxConfig{Table: inbox.Table()})
			require.NoError(t, err)
			biz := createTable(t, admin, "CREATE TABLE %s (id TEXT PRIMARY KEY)")
			held := middleware.InboxKey{Handler: "h", EventID: "held"}
			holder, err := other.Claim(ctx, held) // another process handles it
			require.NoError(t, err)

			// The held key's claim joins one of the four groups and, once
			// the member before it committed, waits on the row lock.
			first := fillLanes(t, ctx, inbox, biz, "a-")
			closing, cancel := context.WithCancel(ctx)
			gaveUp := make(chan error, 1)
			go func() {
				_, err := inbox.Claim(closing, held)
				gaveUp <- err
			}()
			time.Sleep(100 * time.Millisecond) // it has joined a group
			commits := make(chan error, 4)
			for _, c := range first {
				go func() { commits <- c.Commit(ctx) }()
			}
			for range 3 {
				require.NoError(t, <-commits, "a member that succeeded commits")
			}
			select {
			case err := <-commits:
				t.Fatalf("the group of the claim waiting on the row lock ended: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
			cancel()
			require.ErrorIs(t, <-gaveUp, context.Canceled)
			require.NoError(t, <-commits, "its group commits without it")

			// Members waiting for their group's connection give up.
			closing, cancel = context.WithCancel(ctx)
			second := fillLanes(t, ctx, inbox, biz, "c-")
			results := make(chan error, 4)
			for i := range 4 {
				go func() {
					c, err := inbox.Claim(closing, middleware.InboxKey{Handler: "h", EventID: "b-" + strconv.Itoa(i)})
					if err == nil {
						err = c.Rollback() // its handler saw its context end
					}
					results <- err
				}()
			}
			time.Sleep(100 * time.Millisecond) // they have joined the groups
			cancel()
			for _, c := range second {
				go func() { commits <- c.Commit(ctx) }()
			}
			for range 4 {
				require.NoError(t, <-commits, "a member that succeeded commits")
				err := <-results
				require.True(t, err == nil || errors.Is(err, context.Canceled), "%v", err)
			}
			require.Equal(t, 8, rowCount(t, admin, "SELECT count(*) FROM "+biz))
			require.Equal(t, 8, rowCount(t, admin, "SELECT count(*) FROM "+inbox.Table()))
			require.NoError(t, holder.Commit(ctx))
			_, err = inbox.Claim(ctx, held)
			require.ErrorIs(t, err, middleware.ErrDuplicate)
		})
	}
}

// TestPgModesConcurrentWorkers: many workers race for the same keys, one
// handling in five failing first; each key is handled at once by one
// worker only and its effect (written in the claim's transaction) is there
// exactly once.
func TestPgModesConcurrentWorkers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, m := range pgModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			inbox, db := newPGInbox(t, m, middleware.InboxConfig{}, "")
			biz := createTable(t, db, "CREATE TABLE %s (id TEXT PRIMARY KEY)")
			const nKeys, workers = 300, 16
			var mu sync.Mutex
			holders := map[int]int{}
			commits := map[int]int{}
			failed := map[int]bool{}
			overlap := 0
			errs := make(chan error, workers)
			for w := range workers {
				go func() {
					errs <- func() error {
						for j := range nKeys {
							i := (j*7 + w*37) % nKeys // every worker tries every key, in its own order
							id := "e-" + strconv.Itoa(i)
							for {
								c, err := inbox.Claim(ctx, middleware.InboxKey{Handler: "h", EventID: id})
								if errors.Is(err, middleware.ErrDuplicate) {
									break
								}
								if err != nil {
									return err
								}
								mu.Lock()
								holders[i]++
								if holders[i] != 1 {
									overlap++
								}
								fail := i%5 == 0 && !failed[i]
								failed[i] = true
								mu.Unlock()
								err = claimTx(ctx, c, "INSERT INTO "+biz+" (id) VALUES ($1)", id)
								mu.Lock()
								holders[i]--
								mu.Unlock()
								if err != nil {
									_ = c.Rollback()
									return fmt.Errorf("%s: write: %w", id, err)
								}
								if fail {
									if err := c.Rollback(); err != nil {
										return err
									}
									continue
								}
								if err := c.Commit(ctx); err != nil {
									return err
								}
								mu.Lock()
								commits[i]++
								mu.Unlock()
								break
							}
						}
						return nil
					}()
				}()
			}
			for range workers {
				require.NoError(t, <-errs)
			}
			require.Zero(t, overlap, "two workers held one key at once")
			for i := range nKeys {
				require.Equal(t, 1, commits[i], "key %d committed once", i)
			}
			require.Equal(t, nKeys, rowCount(t, db, "SELECT count(*) FROM "+biz), "each effect once")
			require.Equal(t, nKeys, rowCount(t, db, "SELECT count(*) FROM "+inbox.Table()))
			t.Logf("%d keys recorded by %d transactions", nKeys,
				rowCount(t, db, "SELECT count(DISTINCT xmin::text) FROM "+inbox.Table()))
		})
	}
}
