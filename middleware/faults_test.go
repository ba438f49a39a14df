package middleware_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

// Fault-injection tests of consumers (issue #7). Each prints committed /
// delivered / duplicates-on-wire / effects.

// consumerChildEnv holds "topic,group,inbox,effects,deliveries" for a
// re-executed test binary that consumes for TestConsumerSIGKILLedMidHandler;
// it is read in init, before TestMain.
const consumerChildEnv = "EVENTKIT_MIDDLEWARE_FAULT_CHILD"

func init() {
	if spec := os.Getenv(consumerChildEnv); spec != "" {
		os.Exit(runConsumerChild(spec))
	}
}

// effectHandler writes the event's effect inside the inbox transaction,
// then lingers, so that kills land mid-handler.
func effectHandler(effects string, linger time.Duration) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		tx, ok := middleware.TxFromContext(msg.Context())
		if !ok {
			return fmt.Errorf("no inbox transaction")
		}
		if _, err := tx.ExecContext(msg.Context(), "INSERT INTO "+effects+" (id, n) VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET n = "+effects+".n + 1", msg.UUID); err != nil {
			return err
		}
		time.Sleep(linger)
		return nil
	}
}

func runConsumerChild(spec string) int {
	var topic, group, inboxTable, effects, deliveries string
	if _, err := fmt.Sscanf(spec, "%s %s %s %s %s", &topic, &group, &inboxTable, &effects, &deliveries); err != nil {
		fmt.Fprintln(os.Stderr, "bad spec:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 2 }
	tr, err := transports.Open(ctx, testenv.AMQPURL())
	if err != nil {
		return fail(err)
	}
	defer tr.Close()
	db, err := sql.Open("pgx", testenv.PostgresURL())
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	inbox, err := middleware.NewPostgresInbox(db, middleware.InboxConfig{Table: inboxTable})
	if err != nil {
		return fail(err)
	}
	chain, err := middleware.Default(middleware.DefaultConfig{
		Publisher: tr.Publisher(), Inbox: inbox, InTx: true, Subscribers: tr.Subscriber, Logger: discard,
		Retry: middleware.RetryConfig{MaxAttempts: 5, InitialInterval: 5 * time.Millisecond, MaxInterval: 50 * time.Millisecond},
	})
	if err != nil {
		return fail(err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		return fail(err)
	}
	// Outermost: log every delivery, in its own autocommit statement, to
	// count the duplicates on the wire.
	router.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			if _, err := db.ExecContext(msg.Context(), "INSERT INTO "+deliveries+" (event_id) VALUES ($1)", msg.UUID); err != nil {
				return nil, err
			}
			return h(msg)
		}
	})
	router.AddMiddleware(chain.Middlewares()...)
	sub, err := tr.Subscriber(group)
	if err != nil {
		return fail(err)
	}
	router.AddConsumerHandler(group, topic, sub, effectHandler(effects, time.Millisecond))
	if err := router.Run(ctx); err != nil {
		return fail(err)
	}
	return 0
}

// TestConsumerSIGKILLedMidHandler kills a consumer process (RabbitMQ,
// middleware.Default, PostgreSQL inbox in InTx mode) with SIGKILL at random
// points, mid-handler, several times, restarting it each time. The broker
// redelivers what was in flight; the effects are exactly once per event.
// EVENTKIT_FAULT_CONSUMER_EVENTS (default 1,500) and
// EVENTKIT_FAULT_CONSUMER_KILLS (default 5) set the size.
func TestConsumerSIGKILLedMidHandler(t *testing.T) {
	t.Parallel()
	total := envInt("EVENTKIT_FAULT_CONSUMER_EVENTS", 1_500)
	kills := envInt("EVENTKIT_FAULT_CONSUMER_KILLS", 5)
	ctx := context.Background()
	tr, err := transports.Open(ctx, testenv.AMQPURL())
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	inbox, db := newSQLInbox(t, sqlBackends[0], middleware.InboxConfig{})
	effects := createTable(t, db, "CREATE TABLE %s (id TEXT PRIMARY KEY, n INTEGER NOT NULL)")
	deliveries := createTable(t, db, "CREATE TABLE %s (event_id TEXT NOT NULL)")
	topic := testenv.Name(t, "kill")
	const group = "fault.consumer"
	t.Cleanup(func() {
		deleteAMQP(t, [][2]string{{topic, group}, {middleware.DeadLetterTopic(topic), middleware.DeadLetterGroupDefault}})
	})

	sub, err := tr.Subscriber(group)
	require.NoError(t, err)
	require.NoError(t, sub.(message.SubscribeInitializer).SubscribeInitialize(topic))
	require.NoError(t, sub.Close())
	reg := newRegistry(t)
	msgs := make([]*message.Message, total)
	for i := range msgs {
		msgs[i] = newEvent(t, reg, "o-"+strconv.Itoa(i))
	}
	for i := 0; i < total; i += 500 {
		require.NoError(t, tr.Publisher().Publish(topic, msgs[i:min(i+500, total)]...))
	}

	count := func(q string) int {
		var n int
		require.NoError(t, db.QueryRow(q).Scan(&n))
		return n
	}
	spec := fmt.Sprintf("%s %s %s %s %s", topic, group, inbox.Table(), effects, deliveries)
	startChild := func() *exec.Cmd {
		child := exec.Command(os.Args[0], "-test.run=^$")
		child.Env = append(os.Environ(), consumerChildEnv+"="+spec)
		child.Stderr = os.Stderr
		require.NoError(t, child.Start())
		return child
	}
	start := time.Now()
	for k := range kills {
		child := startChild()
		target := (k*total + rand.IntN(total)) / (kills + 1)
		deadline := time.Now().Add(60 * time.Second)
		for count("SELECT count(*) FROM "+effects) < target && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(5000)) * time.Microsecond)
		require.NoError(t, child.Process.Kill())
		_ = child.Wait()
	}
	child := startChild()
	require.Eventually(t, func() bool { return count("SELECT count(*) FROM "+effects) == total }, 90*time.Second, 10*time.Millisecond)
	require.NoError(t, child.Process.Signal(syscall.SIGTERM))
	require.NoError(t, child.Wait(), "the last consumer stops gracefully")

	wire := count("SELECT count(*) FROM " + deliveries)
	delivered := count("SELECT count(DISTINCT event_id) FROM " + deliveries)
	effectSum := count("SELECT COALESCE(sum(n), 0) FROM " + effects)
	testenv.Figure(t, "%d kills, %s: committed %d / delivered %d / duplicates-on-wire %d / effects %d",
		kills, time.Since(start).Round(time.Millisecond), total, delivered, wire-delivered, effectSum)
	require.Equal(t, total, delivered)
	require.Equal(t, total, effectSum, "each effect exactly once")
	require.Equal(t, 1, count("SELECT max(n) FROM "+effects))
	require.Equal(t, total, count("SELECT count(*) FROM "+inbox.Table()))
	require.Positive(t, wire-delivered, "the kills caused redeliveries")
}

// TestConnectionsTerminatedMidHandler consumes with middleware.Default and
// a PostgreSQL inbox in InTx mode while the consumer's database connections
// (only those: they carry their own application_name) are killed with
// pg_terminate_backend: for one event in 50, from inside the handler after
// its write (its own transaction's backend), and also in between, at
// progress points, whatever the consumer is doing then. Failed attempts
// roll back and are retried; every effect is there exactly once; nothing is
// dead-lettered.
func TestConnectionsTerminatedMidHandler(t *testing.T) {
	t.Parallel()
	total := envInt("EVENTKIT_FAULT_PG_CONSUMER_EVENTS", 1_500)
	_, admin := newSQLInbox(t, sqlBackends[0], middleware.InboxConfig{})
	app := testenv.Name(t, "ek")
	db := openDB(t, "PostgreSQL", "pgx", testenv.PostgresURL()+"&application_name="+app)
	inbox, err := middleware.NewPostgresInbox(db, middleware.InboxConfig{Table: testenv.Name(t, "inbox")})
	require.NoError(t, err)
	require.NoError(t, inbox.Setup(context.Background()))
	t.Cleanup(func() { _, _ = admin.Exec("DROP TABLE IF EXISTS " + inbox.Table()) })
	effects := createTable(t, admin, "CREATE TABLE %s (id TEXT PRIMARY KEY, n INTEGER NOT NULL)")

	tr := newMemory(t)
	chain, err := middleware.Default(middleware.DefaultConfig{
		Publisher: tr.Publisher(), Inbox: inbox, InTx: true, Logger: discard,
		Retry: middleware.RetryConfig{MaxAttempts: 10, InitialInterval: time.Millisecond, MaxInterval: 20 * time.Millisecond},
	})
	require.NoError(t, err)
	var wire, inHandler, between, pooled atomic.Int64
	var handled atomic.Int64
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	router.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			wire.Add(1)
			// Every 75 events, kill the consumer's pooled connections,
			// which the next claim would use.
			if n := handled.Load(); n > 0 && n%75 == 0 && between.Load() < n/75 {
				between.Add(1)
				var k int64
				if err := admin.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&k); err == nil {
					pooled.Add(k)
				}
			}
			return h(msg)
		}
	})
	router.AddMiddleware(chain.Middlewares()...)
	topic := testenv.Name(t, "pgkill")
	sub, err := tr.Subscriber("fault.pg")
	require.NoError(t, err)
	write := effectHandler(effects, 0)
	var killedOnce sync.Map
	router.AddConsumerHandler("fault.pg", topic, sub, func(msg *message.Message) error {
		if err := write(msg); err != nil {
			return err
		}
		// One event in 50, once: kill this transaction's own backend
		// after the write, before the commit.
		seq := msg.Metadata.Get("seq")
		if i, _ := strconv.Atoi(seq); i%50 == 0 {
			if _, done := killedOnce.LoadOrStore(seq, true); done {
				handled.Add(1)
				return nil
			}
			tx, _ := middleware.TxFromContext(msg.Context())
			var pid int
			if err := tx.QueryRowContext(msg.Context(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				return err
			}
			if _, err := admin.Exec("SELECT pg_terminate_backend($1)", pid); err != nil {
				return err
			}
			inHandler.Add(1)
		}
		handled.Add(1)
		return nil
	})
	reg := newRegistry(t)
	for i := range total {
		m := newEvent(t, reg, "o-"+strconv.Itoa(i))
		m.Metadata.Set("seq", strconv.Itoa(i))
		require.NoError(t, tr.Publisher().Publish(topic, m))
	}
	startRouter(t, router)
	count := func(q string) int {
		var n int
		require.NoError(t, admin.QueryRow(q).Scan(&n))
		return n
	}
	require.Eventually(t, func() bool { return count("SELECT count(*) FROM "+effects) == total }, 60*time.Second, 10*time.Millisecond)

	effectSum := count("SELECT COALESCE(sum(n), 0) FROM " + effects)
	testenv.Figure(t, "%d kills in the handler, %d rounds in between (%d pooled backends): committed %d / delivered %d / duplicates-on-wire %d / effects %d (retries %d, dead letters %d)",
		inHandler.Load(), between.Load(), pooled.Load(), total, count("SELECT count(*) FROM "+effects), int(wire.Load())-total, effectSum, chain.Retry.Retries(), chain.DeadLettered())
	require.EqualValues(t, (total+49)/50, inHandler.Load(), "every planned kill landed in its handler")
	require.Positive(t, pooled.Load(), "pooled connections were killed too")
	require.GreaterOrEqual(t, chain.Retry.Retries(), inHandler.Load(), "the killed attempts were retried")
	require.Equal(t, total, effectSum, "each effect exactly once")
	require.Equal(t, 1, count("SELECT max(n) FROM "+effects))
	require.Zero(t, chain.DeadLettered())
}

func envInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil && n > 0 {
		return n
	}
	return def
}

// TestGroupCommitConnectionsTerminated kills the PostgreSQL connections of
// a group-commit inbox (the group transactions' and the pooled ones) over
// and over while the Default chain consumes from RabbitMQ with concurrent
// handling: a failed group fails its members, which are retried; every
// event is handled and recorded, nothing is dead-lettered. Without InTx the
// handler of a member whose group failed after it ran runs again: effects
// are at least once, and the extra runs are bounded by the kills.
func TestGroupCommitConnectionsTerminated(t *testing.T) {
	t.Parallel()
	total := envInt("EVENTKIT_FAULT_GROUP_EVENTS", 3_000)
	_, admin := newSQLInbox(t, sqlBackends[0], middleware.InboxConfig{})
	app := testenv.Name(t, "grp")
	db := openDB(t, "PostgreSQL", "pgx", testenv.PostgresURL()+"&application_name="+app)
	inbox, err := middleware.NewPostgresInbox(db, middleware.InboxConfig{Table: testenv.Name(t, "inbox"), GroupCommit: true})
	require.NoError(t, err)
	require.NoError(t, inbox.Setup(context.Background()))
	t.Cleanup(func() { _, _ = admin.Exec("DROP TABLE IF EXISTS " + inbox.Table()) })

	tr, chain, topic, sub := concurrentConsumer(t, inbox, "fault.group", 10)

	var wire, rounds, killed atomic.Int64
	var mu sync.Mutex
	effects := map[string]int{}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	router.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			wire.Add(1)
			return h(msg)
		}
	})
	router.AddMiddleware(chain.Middlewares()...)
	router.AddConsumerHandler("fault.group", topic, sub, func(msg *message.Message) error {
		mu.Lock()
		effects[msg.UUID]++
		n := len(effects)
		mu.Unlock()
		// Every 150 events, kill every connection of the inbox: the open
		// group transactions among them.
		if n%150 == 0 && rounds.Load() < int64(n/150) {
			rounds.Add(1)
			var k int64
			if err := admin.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&k); err == nil {
				killed.Add(k)
			}
		}
		return nil
	})
	startRouter(t, router)
	reg := newRegistry(t)
	msgs := make([]*message.Message, total)
	for i := range total {
		msgs[i] = newEvent(t, reg, "o-"+strconv.Itoa(i))
	}
	require.NoError(t, tr.Publisher().Publish(topic, msgs...))

	rows := func() int {
		var n int
		require.NoError(t, admin.QueryRow("SELECT count(*) FROM "+inbox.Table()).Scan(&n))
		return n
	}
	require.Eventually(t, func() bool { return rows() == total }, 90*time.Second, 20*time.Millisecond)

	mu.Lock()
	defer mu.Unlock()
	sum := 0
	for _, m := range msgs {
		require.Positive(t, effects[m.UUID], "event %s handled", m.UUID)
		sum += effects[m.UUID]
	}
	testenv.Figure(t, "%d kill rounds (%d backends): committed %d / delivered %d / duplicates-on-wire %d / effects %d (retries %d, dead letters %d)",
		rounds.Load(), killed.Load(), total, len(effects), int(wire.Load())-total, sum, chain.Retry.Retries(), chain.DeadLettered())
	require.Equal(t, total, len(effects))
	require.Positive(t, killed.Load(), "connections were killed")
	require.Positive(t, chain.Retry.Retries(), "the failed groups' members were retried")
	require.Zero(t, chain.DeadLettered())
	require.LessOrEqual(t, sum-total, int(chain.Retry.Retries()), "a handler runs again only for a retried attempt")
}
