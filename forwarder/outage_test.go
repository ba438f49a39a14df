package forwarder_test

import (
	"context"
	"database/sql"
	"errors"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

// outageEvent is the event of TestRelay_RabbitMQStoppedMidDrain.
type outageEvent struct {
	N int `json:"n"`
}

// rabbitmqctl runs rabbitmqctl against the fault node.
func rabbitmqctl(t *testing.T, args ...string) {
	t.Helper()
	args = append([]string{"-q", "-n", testenv.AMQPFaultNode()}, args...)
	out, err := exec.Command("rabbitmqctl", args...).CombinedOutput()
	require.NoError(t, err, "rabbitmqctl %v: %s", args, out)
}

// The broker itself is stopped (rabbitmqctl stop_app) for 10 s in the middle
// of a drain, while commits go on, and started again: the relay, the
// publisher and the consumers resume on their own, every committed event is
// delivered and handled once, none of a rolled-back transaction ever is.
// It runs against the fault node (.ci/rabbitmq-fault-node), never the
// shared one.
func TestRelay_RabbitMQStoppedMidDrain(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	testenv.LockFaultNode(t)
	tr, err := transports.Open(ctx, testenv.AMQPFaultURL())
	if err != nil {
		testenv.Unavailable(t, "the fault RabbitMQ node (.ci/rabbitmq-fault-node)", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	// Whatever happens, leave the node running.
	t.Cleanup(func() {
		_ = exec.Command("rabbitmqctl", "-q", "-n", testenv.AMQPFaultNode(), "start_app").Run()
	})

	db, err := sql.Open("pgx", testenv.PostgresURL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	if err := db.PingContext(ctx); err != nil {
		testenv.Unavailable(t, "PostgreSQL", err)
	}
	db.SetMaxOpenConns(20)

	name := testenv.Name(t, "outage")
	topic := "eventkit.test." + name
	topicOf := func(string) string { return topic }
	reg := events.NewRegistry()
	require.NoError(t, events.Register[outageEvent](reg, "test.outage_event"))
	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Name: name, Topic: topicOf})
	require.NoError(t, err)
	require.NoError(t, ob.Setup(ctx))
	inbox, err := middleware.NewPostgresInbox(db, middleware.InboxConfig{Table: name + "_inbox"})
	require.NoError(t, err)
	require.NoError(t, inbox.Setup(ctx))
	t.Cleanup(func() {
		for _, table := range []string{"watermill_" + name, "watermill_offsets_" + name, name + "_inbox"} {
			_, _ = db.Exec(`DROP TABLE IF EXISTS "` + table + `"`)
		}
	})

	// The consumer: the Default chain with the PostgreSQL inbox; effects
	// counts each event's successful handling.
	var mu sync.Mutex
	effects := map[int]int{}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	chain, err := middleware.Default(middleware.DefaultConfig{
		Publisher: tr.Publisher(), Inbox: inbox, Subscribers: tr.Subscriber, Logger: testLogger(t),
	})
	require.NoError(t, err)
	router.AddMiddleware(chain.Middlewares()...)
	proc, err := cqrs.NewProcessor(router, tr.Subscriber, cqrs.ProcessorConfig{DeadLetter: tr.Publisher(), Registry: reg, Topic: topicOf})
	require.NoError(t, err)
	require.NoError(t, proc.AddHandlers(cqrs.NewHandler(name+"_h", func(ctx context.Context, e *outageEvent) error {
		mu.Lock()
		effects[e.N]++
		mu.Unlock()
		return nil
	})))
	// The wire: every delivery to a second group, duplicates included.
	wireSub, err := tr.Subscriber(name + "_wire")
	require.NoError(t, err)
	wire, err := wireSub.Subscribe(ctx, topic)
	require.NoError(t, err)
	onWire := map[string]int{}
	wireDone := make(chan struct{})
	go func() {
		defer close(wireDone)
		for m := range wire {
			mu.Lock()
			onWire[m.UUID]++
			mu.Unlock()
			m.Ack()
		}
	}()
	routerDone := make(chan error, 1)
	go func() { routerDone <- router.Run(ctx) }()
	<-router.Running()

	committed := 0
	commit := func(rollback bool, from, n int) {
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		evs := make([]any, n)
		for i := range evs {
			evs[i] = outageEvent{N: from + i}
		}
		require.NoError(t, ob.Add(ctx, tx, evs...))
		if rollback {
			require.NoError(t, tx.Rollback())
			return
		}
		require.NoError(t, tx.Commit())
		committed += n
	}
	const perPhase, txSize, rolledBackBase = 3000, 100, 1_000_000
	for i := 0; i < perPhase; i += txSize {
		commit(false, i, txSize)
	}
	commit(true, rolledBackBase, txSize)

	relay, err := forwarder.NewRelay(ob, tr.Publisher(), forwarder.RelayConfig{MaxAttempts: 1, Logger: testLogger(t)})
	require.NoError(t, err)
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(relayCtx) }()

	handled := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(effects)
	}
	require.Eventually(t, func() bool { return handled() >= 500 }, 30*time.Second, 5*time.Millisecond)

	rabbitmqctl(t, "stop_app")
	stoppedAt := time.Now()
	for i := perPhase; i < 2*perPhase; i += txSize {
		commit(false, i, txSize)
	}
	commit(true, rolledBackBase+txSize, txSize)
	time.Sleep(10*time.Second - time.Since(stoppedAt))
	during, err := ob.Stats(ctx)
	require.NoError(t, err)
	require.Zero(t, during.Failed, "an outage must not use up attempts")
	rabbitmqctl(t, "start_app")
	restartedAt := time.Now()

	require.Eventually(t, func() bool {
		s, err := ob.Stats(ctx)
		return err == nil && s.Published == int64(committed) && handled() == committed
	}, 90*time.Second, 50*time.Millisecond, "handled %d of %d", handled(), committed)
	resumedIn := time.Since(restartedAt)

	stopRelay()
	require.NoError(t, <-relayDone)
	require.NoError(t, router.Close())
	if err := <-routerDone; err != nil && !errors.Is(err, context.Canceled) {
		require.NoError(t, err)
	}
	require.NoError(t, wireSub.Close())
	<-wireDone

	mu.Lock()
	defer mu.Unlock()
	dupsOnWire, twice := 0, 0
	for _, c := range onWire {
		dupsOnWire += c - 1
	}
	for n, c := range effects {
		require.Less(t, n, rolledBackBase, "event %d of a rolled-back transaction was delivered", n)
		if c > 1 {
			twice++
		}
	}
	testenv.Figure(t, "committed %d / delivered %d / duplicates on wire %d / effects %d (%d twice); outage %s, all handled %s after restart",
		committed, len(onWire), dupsOnWire, len(effects), twice, 10*time.Second, resumedIn.Round(time.Millisecond))
	require.Equal(t, committed, len(onWire), "delivered")
	require.Equal(t, committed, len(effects), "effects")
	require.Zero(t, twice, "an event handled twice")
	require.Zero(t, during.Failed)
}
