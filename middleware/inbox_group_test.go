package middleware_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

// newGroupInbox sets up a PostgreSQL inbox with GroupCommit in a table of
// its own and returns it with its database.
func newGroupInbox(t *testing.T) (*middleware.SQLInbox, *sql.DB) {
	t.Helper()
	s, db := newSQLInbox(t, sqlBackends[0], middleware.InboxConfig{GroupCommit: true})
	require.True(t, s.GroupCommit())
	return s, db
}

// xmins returns how many rows table has and how many transactions wrote
// them.
func xmins(t *testing.T, db *sql.DB, table string) (rows, txs int) {
	t.Helper()
	require.NoError(t, db.QueryRow(`SELECT count(*), count(DISTINCT xmin::text) FROM `+table).Scan(&rows, &txs))
	return rows, txs
}

func commitAll(t *testing.T, claims []middleware.InboxClaim) {
	t.Helper()
	errs := make(chan error, len(claims))
	for _, c := range claims {
		go func() { errs <- c.Commit(context.Background()) }()
	}
	for range claims {
		require.NoError(t, <-errs)
	}
}

func TestGroupCommitConfig(t *testing.T) {
	t.Parallel()
	_, err := middleware.NewMySQLInbox(&sqlDBPlaceholder, middleware.InboxConfig{GroupCommit: true})
	require.ErrorContains(t, err, "GroupCommit is supported with PostgreSQL only")
	_, err = middleware.NewSQLiteInbox(&sqlDBPlaceholder, middleware.InboxConfig{GroupCommit: true})
	require.ErrorContains(t, err, "GroupCommit is supported with PostgreSQL only")

	s, err := middleware.NewPostgresInbox(&sqlDBPlaceholder, middleware.InboxConfig{GroupCommit: true})
	require.NoError(t, err)
	_, err = middleware.NewDeduplicate(s, middleware.DeduplicateConfig{InTx: true})
	require.ErrorContains(t, err, "InboxConfig.GroupCommit")
	_, err = middleware.Default(middleware.DefaultConfig{Publisher: &failingPublisher{}, Inbox: s, InTx: true,
		DelayedRetry: middleware.DelayedRetryConfig{Disabled: true}})
	require.ErrorContains(t, err, "InboxConfig.GroupCommit")
	_, err = middleware.NewDeduplicate(s, middleware.DeduplicateConfig{})
	require.NoError(t, err)

	plain, err := middleware.NewPostgresInbox(&sqlDBPlaceholder, middleware.InboxConfig{})
	require.NoError(t, err)
	require.False(t, plain.GroupCommit(), "off by default")
	mem, err := middleware.NewMemoryInbox(middleware.InboxConfig{GroupCommit: true})
	require.NoError(t, err, "a MemoryInbox ignores GroupCommit")
	_, err = mem.Claim(context.Background(), middleware.InboxKey{Handler: "h", EventID: "e"})
	require.NoError(t, err)
}

func TestGroupCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("claims open together share one transaction", func(t *testing.T) {
		t.Parallel()
		s, db := newGroupInbox(t)
		var keys []middleware.InboxKey
		var claims []middleware.InboxClaim
		for i := range 10 {
			k := middleware.InboxKey{Handler: "h", EventID: "e-" + strconv.Itoa(i)}
			c, err := s.Claim(ctx, k)
			require.NoError(t, err)
			require.Nil(t, c.Tx(), "a member has no transaction of its own")
			keys, claims = append(keys, k), append(claims, c)
		}
		// e-3 fails: its row goes, the others stay.
		require.NoError(t, claims[3].Rollback())
		require.Error(t, claims[3].Commit(ctx), "a rolled-back claim cannot commit")
		committed := append(append([]middleware.InboxClaim{}, claims[:3]...), claims[4:]...)
		commitAll(t, committed)
		require.NoError(t, claims[0].Rollback(), "rollback after commit is a no-op")
		for i, k := range keys {
			require.Equal(t, i != 3, contains(t, s, k), k.EventID)
		}
		rows, txs := xmins(t, db, s.Table())
		require.Equal(t, 9, rows)
		require.Equal(t, 1, txs, "nine keys, one commit")

		_, err := s.Claim(ctx, keys[0])
		require.ErrorIs(t, err, middleware.ErrDuplicate)
		c, err := s.Claim(ctx, keys[3])
		require.NoError(t, err, "the rolled-back key can be claimed again")
		require.NoError(t, c.Commit(ctx))
		require.True(t, contains(t, s, keys[3]))
	})

	t.Run("a group whose every member rolled back records nothing", func(t *testing.T) {
		t.Parallel()
		s, _ := newGroupInbox(t)
		a, err := s.Claim(ctx, middleware.InboxKey{Handler: "h", EventID: "a"})
		require.NoError(t, err)
		b, err := s.Claim(ctx, middleware.InboxKey{Handler: "h", EventID: "b"})
		require.NoError(t, err)
		require.NoError(t, a.Rollback())
		require.NoError(t, b.Rollback())
		c, err := s.Claim(ctx, middleware.InboxKey{Handler: "h", EventID: "a"})
		require.NoError(t, err, "waits for the group to end, then claims")
		require.NoError(t, c.Commit(ctx))
		require.False(t, contains(t, s, middleware.InboxKey{Handler: "h", EventID: "b"}))
	})

	t.Run("many workers racing for the same keys: one handling each, grouped commits", func(t *testing.T) {
		t.Parallel()
		s, db := newGroupInbox(t)
		const nKeys, workers = 400, 16
		var holders [nKeys]atomic.Int32
		var commits [nKeys]atomic.Int32
		var failedOnce [nKeys]atomic.Bool
		var overlap atomic.Int32
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rnd := rand.New(rand.NewPCG(uint64(w), 7))
				// Every key is tried by every worker, in its own order,
				// until it is recorded.
				for _, i := range rnd.Perm(nKeys) {
					k := middleware.InboxKey{Handler: "h", EventID: "e-" + strconv.Itoa(i)}
					for {
						c, err := s.Claim(ctx, k)
						if err == middleware.ErrDuplicate {
							break
						}
						if err != nil {
							t.Error(err)
							return
						}
						if holders[i].Add(1) != 1 {
							overlap.Add(1)
						}
						time.Sleep(time.Duration(rnd.IntN(300)) * time.Microsecond)
						holders[i].Add(-1)
						// One key in five fails its first handling.
						if i%5 == 0 && failedOnce[i].CompareAndSwap(false, true) {
							require.NoError(t, c.Rollback())
							continue
						}
						if err := c.Commit(ctx); err != nil {
							t.Error(err)
							return
						}
						commits[i].Add(1)
						break
					}
				}
			}()
		}
		wg.Wait()
		require.Zero(t, overlap.Load(), "two workers held one key at once")
		for i := range nKeys {
			require.EqualValues(t, 1, commits[i].Load(), "key %d committed once", i)
		}
		rows, txs := xmins(t, db, s.Table())
		require.Equal(t, nKeys, rows)
		t.Logf("%d keys recorded by %d transactions", nKeys, txs)
		require.Less(t, txs, nKeys*3/4, "claims made at the same time share transactions")
	})

	t.Run("two inboxes on one table exclude each other through the row lock", func(t *testing.T) {
		t.Parallel()
		a, db := newGroupInbox(t)
		b, err := middleware.NewPostgresInbox(db, middleware.InboxConfig{Table: a.Table(), GroupCommit: true})
		require.NoError(t, err)
		k := middleware.InboxKey{Handler: "h", EventID: "shared"}
		first, err := a.Claim(ctx, k)
		require.NoError(t, err)

		// A claim that gives up while it waits leaves no trace.
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		began := time.Now()
		_, err = b.Claim(short, k)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Less(t, time.Since(began), 5*time.Second)

		second := make(chan error, 1)
		go func() {
			_, err := b.Claim(ctx, k)
			second <- err
		}()
		select {
		case err := <-second:
			t.Fatalf("the second inbox claimed a held key: %v", err)
		case <-time.After(300 * time.Millisecond):
		}
		require.NoError(t, first.Commit(ctx))
		select {
		case err := <-second:
			require.ErrorIs(t, err, middleware.ErrDuplicate)
		case <-time.After(10 * time.Second):
			t.Fatal("the second claim did not end after the first committed")
		}
	})

	t.Run("a broken group transaction fails its members and records nothing", func(t *testing.T) {
		t.Parallel()
		app := testenv.Name(t, "grp")
		_, admin := newGroupInbox(t)
		db := openDB(t, "PostgreSQL", "pgx", testenv.PostgresURL()+"&application_name="+app)
		s, err := middleware.NewPostgresInbox(db, middleware.InboxConfig{Table: testenv.Name(t, "inbox"), GroupCommit: true})
		require.NoError(t, err)
		require.NoError(t, s.Setup(ctx))
		t.Cleanup(func() { _, _ = admin.Exec("DROP TABLE IF EXISTS " + s.Table()) })

		ka := middleware.InboxKey{Handler: "h", EventID: "a"}
		kb := middleware.InboxKey{Handler: "h", EventID: "b"}
		a, err := s.Claim(ctx, ka)
		require.NoError(t, err)
		b, err := s.Claim(ctx, kb)
		require.NoError(t, err)
		var killed int
		require.NoError(t, admin.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = $1 AND state = 'idle in transaction'`, app).Scan(&killed))
		require.Equal(t, 1, killed, "the group holds one connection")

		errs := make(chan error, 2)
		go func() { errs <- a.Commit(ctx) }()
		go func() { errs <- b.Commit(ctx) }()
		for range 2 {
			require.ErrorContains(t, <-errs, "middleware: inbox commit")
		}
		require.False(t, contains(t, s, ka))
		c, err := s.Claim(ctx, ka)
		require.NoError(t, err, "a key whose group failed can be claimed again")
		require.NoError(t, c.Commit(ctx))
		require.True(t, contains(t, s, ka))
	})
}

// concurrentConsumer opens the AMQP transport with 16 messages in flight per
// subscription and returns it with a Default chain over inbox (attempts
// tries per message), a new topic and a subscriber of group to it, its
// queue declared.
func concurrentConsumer(t *testing.T, inbox middleware.InboxStore, group string, attempts int) (*transports.Transport, *middleware.Chain, string, message.Subscriber) {
	t.Helper()
	tr, err := transports.Open(context.Background(), testenv.AMQPURL()+"?prefetch=32&concurrency=16")
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	chain, err := middleware.Default(middleware.DefaultConfig{
		Publisher: tr.Publisher(), Inbox: inbox, Subscribers: tr.Subscriber, Logger: discard,
		Retry: middleware.RetryConfig{MaxAttempts: attempts, InitialInterval: time.Millisecond, MaxInterval: 20 * time.Millisecond},
	})
	require.NoError(t, err)
	topic := testenv.Name(t, "conc")
	sub, err := tr.Subscriber(group)
	require.NoError(t, err)
	require.NoError(t, sub.(message.SubscribeInitializer).SubscribeInitialize(topic))
	return tr, chain, topic, sub
}

// TestGroupCommitEndToEndRabbitMQ runs the Default chain with a
// group-commit inbox behind the AMQP transport with concurrent handling:
// every event is handled once, duplicates on the wire are dropped, failed
// attempts are retried, and the commits are shared.
func TestGroupCommitEndToEndRabbitMQ(t *testing.T) {
	t.Parallel()
	const events, dupEvery, failEvery = 600, 6, 10
	inbox, db := newGroupInbox(t)
	tr, chain, topic, sub := concurrentConsumer(t, inbox, "group.e2e", 5)

	var mu sync.Mutex
	handled := map[string]int{}
	attempts := map[string]int{}
	running, maxRunning := 0, 0
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	router.AddMiddleware(chain.Middlewares()...)
	router.AddConsumerHandler("group.e2e", topic, sub, func(msg *message.Message) error {
		seq, _ := strconv.Atoi(msg.Metadata.Get("seq"))
		mu.Lock()
		attempts[msg.UUID]++
		first := attempts[msg.UUID] == 1
		running++
		maxRunning = max(maxRunning, running)
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		running--
		if seq%failEvery == 0 && first {
			return fmt.Errorf("first attempt of %d fails", seq)
		}
		handled[msg.UUID]++
		return nil
	})
	startRouter(t, router)

	reg := newRegistry(t)
	var msgs []*message.Message
	for i := range events {
		m := newEvent(t, reg, "o-"+strconv.Itoa(i))
		m.Metadata.Set("seq", strconv.Itoa(i))
		msgs = append(msgs, m)
		if i%dupEvery == 0 {
			msgs = append(msgs, m.Copy())
		}
	}
	require.NoError(t, tr.Publisher().Publish(topic, msgs...))
	dups := int64((events + dupEvery - 1) / dupEvery)
	// A handler's run counts before its group commits: wait for the rows.
	require.Eventually(t, func() bool {
		mu.Lock()
		n := len(handled)
		mu.Unlock()
		var rows int
		_ = db.QueryRow("SELECT count(*) FROM " + inbox.Table()).Scan(&rows)
		return n == events && chain.Duplicates() == dups && rows == events
	}, 60*time.Second, 10*time.Millisecond)

	mu.Lock()
	defer mu.Unlock()
	for id, n := range handled {
		require.Equal(t, 1, n, "event %s handled once", id)
	}
	require.Greater(t, maxRunning, 1, "handlers ran concurrently")
	require.Zero(t, chain.DeadLettered())
	_, txs := xmins(t, db, inbox.Table())
	t.Logf("%d events, %d duplicates dropped, %d retries, up to %d handlers at once, %d inbox transactions",
		events, chain.Duplicates(), chain.Retry.Retries(), maxRunning, txs)
	require.Less(t, txs, events, "commits were shared")
}
