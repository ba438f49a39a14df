package forwarder_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/kafkatest"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports"
)

// Fault-injection tests of the relay (issue #7). Each prints committed /
// delivered / duplicates-on-wire / effects.

// faultChildEnv names the outbox a re-executed test binary relays for
// TestRelaySIGKILLedWhileDraining; it is read in init, before TestMain.
const faultChildEnv = "EVENTKIT_FORWARDER_FAULT_CHILD"

func init() {
	if name := os.Getenv(faultChildEnv); name != "" {
		os.Exit(runFaultChild(name))
	}
}

// runFaultChild relays the outbox into its sink table until killed. The
// sink pauses up to 3 ms after each confirmed batch, so that kills land
// between a confirm and its mark too.
func runFaultChild(name string) int {
	return relayChild(name, 500, func(db *sql.DB) message.Publisher {
		return &jitterSink{sqlSink: sqlSink{db: db, table: "sink_" + name}}
	})
}

// jitterSink is a sqlSink that sleeps 0-3 ms after each confirm.
type jitterSink struct{ sqlSink }

func (s *jitterSink) Publish(topic string, msgs ...*message.Message) error {
	if err := s.sqlSink.Publish(topic, msgs...); err != nil {
		return err
	}
	time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
	return nil
}

// envInt reads a positive integer from the environment, else def.
func envInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil && n > 0 {
		return n
	}
	return def
}

// sinkTally counts a sink table: rows, distinct event ids, and the ids
// that are not committed outbox rows.
func sinkTally(t *testing.T, db *sql.DB, sink, outbox string) (rows, distinct, foreign int) {
	t.Helper()
	require.NoError(t, db.QueryRow(`SELECT count(*), count(DISTINCT event_id) FROM "`+sink+`"`).Scan(&rows, &distinct))
	require.NoError(t, db.QueryRow(`SELECT count(DISTINCT s.event_id) FROM "`+sink+`" s LEFT JOIN "`+outbox+`" o ON o.uuid::text = s.event_id WHERE o.uuid IS NULL`).Scan(&foreign))
	return rows, distinct, foreign
}

// addWithRollbacks commits total events in transactions of batch, and
// between them rolls back a transaction of the same size every fifth time.
// It returns how many events were rolled back.
func addWithRollbacks(t *testing.T, e *env, total, batch int) int {
	t.Helper()
	ctx := context.Background()
	rolled := 0
	for i, n := 0, 0; n < total; i++ {
		size := min(batch, total-n)
		tx := e.begin(ctx)
		if i%5 == 4 {
			require.NoError(t, e.ob.Add(ctx, tx.raw, orders(-size, size)...))
			require.NoError(t, tx.rollback())
			rolled += size
			continue
		}
		require.NoError(t, e.ob.Add(ctx, tx.raw, orders(n, size)...))
		require.NoError(t, tx.commit())
		n += size
	}
	return rolled
}

// TestRelaySIGKILLedWhileDraining kills the relay process with SIGKILL at
// random points while it drains the outbox, restarts it each time, and
// checks that every committed event reached the sink and that no event of a
// rolled-back transaction did. EVENTKIT_FAULT_EVENTS (default 50,000) and
// EVENTKIT_FAULT_KILLS (default 10) set the size.
func TestRelaySIGKILLedWhileDraining(t *testing.T) {
	t.Parallel()
	total := envInt("EVENTKIT_FAULT_EVENTS", 50_000)
	kills := envInt("EVENTKIT_FAULT_KILLS", 10)
	e := newEnv(t, pgStd)
	ctx := context.Background()
	sink := "sink_" + e.name
	require.NoError(t, e.exec(ctx, `CREATE TABLE "`+sink+`" (id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL)`))
	t.Cleanup(func() { _ = e.exec(context.Background(), `DROP TABLE IF EXISTS "`+sink+`"`) })

	start := time.Now()
	rolled := addWithRollbacks(t, e, total, 500)
	t.Logf("wrote %d committed and %d rolled-back events in %s", total, rolled, time.Since(start).Round(time.Millisecond))
	sinkRows := func() int {
		var n int
		require.NoError(t, e.db.QueryRow(`SELECT count(*) FROM "`+sink+`"`).Scan(&n))
		return n
	}

	start = time.Now()
	for k := range kills {
		child := exec.Command(os.Args[0], "-test.run=^$")
		child.Env = append(os.Environ(), faultChildEnv+"="+e.name)
		child.Stderr = os.Stderr
		require.NoError(t, child.Start())
		// Kill at a random point of the k-th slice of the drain.
		target := (k*total + rand.IntN(total)) / (kills + 1)
		deadline := time.Now().Add(60 * time.Second)
		for sinkRows() < target && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		require.NoError(t, child.Process.Kill())
		_ = child.Wait()
		require.Positive(t, e.stats().Pending, "kill %d landed mid-drain", k)
	}
	killedAt := sinkRows()

	// A last relay, in process, finishes the drain.
	e.start(sqlSink{db: e.db, table: sink}, fastRelay())
	require.Eventually(t, func() bool { return e.stats().Pending == 0 }, 60*time.Second, 10*time.Millisecond)
	rows, distinct, foreign := sinkTally(t, e.db, sink, e.ob.Table())
	testenv.Figure(t, "%d kills (sink had %d rows at the last), drained in %s: committed %d / delivered %d / duplicates-on-wire %d / effects %d (rolled back %d, delivered from them %d)",
		kills, killedAt, time.Since(start).Round(time.Millisecond), total, distinct, rows-distinct, distinct, rolled, foreign)
	require.Equal(t, total, distinct, "every committed event delivered")
	require.Zero(t, foreign, "no event of a rolled-back transaction delivered")
	require.Equal(t, int64(total), e.stats().Published)
}

// TestRelayConnectionsTerminatedMidDrain drains an outbox through a relay
// whose database connections (and only those: they carry their own
// application_name) are killed with pg_terminate_backend 20 times, spread
// over the drain, each time in the middle of a batch the broker is
// confirming, so that the relay loses its connections, its leader lock and
// the chance to mark what was confirmed. The relay recovers on its own and
// every committed event is delivered.
func TestRelayConnectionsTerminatedMidDrain(t *testing.T) {
	t.Parallel()
	total := envInt("EVENTKIT_FAULT_PG_EVENTS", 5_000)
	const rounds = 20
	e := newEnv(t, pgStd)
	app := "ek_" + e.name
	relayDB, err := sql.Open("pgx", withParam(testenv.PostgresURL(), "application_name", app))
	require.NoError(t, err)
	t.Cleanup(func() { _ = relayDB.Close() })
	ob, err := forwarder.NewOutbox(relayDB, forwarder.OutboxConfig{Registry: e.reg, Name: e.name, Logger: testLogger(t)})
	require.NoError(t, err)
	rolled := addWithRollbacks(t, e, total, 250)

	var terminated, kills atomic.Int64
	var published atomic.Int64
	broker := &memBroker{}
	broker.setFail(func(string, *message.Message) error {
		n := published.Add(1)
		if n%int64(total/(rounds+1)) == 0 && kills.Load() < rounds {
			kills.Add(1)
			var k int64
			if err := e.db.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&k); err == nil {
				terminated.Add(k)
			}
		}
		return nil
	})
	relay, err := forwarder.NewRelay(ob, broker, fastRelay())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	require.Eventually(t, func() bool { return e.stats().Pending == 0 }, 60*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done, "the relay survived the killed connections")

	seen := map[string]int{}
	for _, p := range broker.messages() {
		seen[p.msg.UUID]++
	}
	var committed int
	require.NoError(t, e.db.QueryRow(`SELECT count(*) FROM "`+e.ob.Table()+`"`).Scan(&committed))
	delivered := 0
	rs, err := e.db.Query(`SELECT uuid FROM "` + e.ob.Table() + `"`)
	require.NoError(t, err)
	for rs.Next() {
		var id string
		require.NoError(t, rs.Scan(&id))
		if seen[id] > 0 {
			delivered++
		}
	}
	require.NoError(t, rs.Err())
	testenv.Figure(t, "%d rounds, %d backends terminated: committed %d / delivered %d / duplicates-on-wire %d / effects %d (rolled back %d)",
		kills.Load(), terminated.Load(), committed, delivered, len(broker.messages())-len(seen), len(seen), rolled)
	require.EqualValues(t, rounds, kills.Load())
	require.Positive(t, terminated.Load(), "the test killed connections")
	require.Equal(t, total, committed)
	require.Equal(t, committed, delivered, "every committed event delivered")
	require.Len(t, seen, committed, "nothing else delivered")
}

func withParam(rawURL, key, value string) string {
	sep := "?"
	if strings.Contains(rawURL, "?") {
		sep = "&"
	}
	return rawURL + sep + key + "=" + value
}

// TestTwoRelaysThreeConsumersKeepPerKeyOrderOnKafka drains one outbox with
// two relays at once (one is stopped mid-drain, the other takes over) to
// Kafka (kfake, 4 partitions), consumed by three members of one consumer
// group (one leaves mid-drain, forcing a rebalance). Nothing is lost, and
// per key the events arrive in commit order (duplicates after a rebalance
// may repeat earlier ones, never skip ahead).
func TestTwoRelaysThreeConsumersKeepPerKeyOrderOnKafka(t *testing.T) {
	t.Parallel()
	total := envInt("EVENTKIT_FAULT_KAFKA_EVENTS", 3_000)
	const keys = 8
	e := newEnv(t, pgStd)
	cluster := kafkatest.Cluster(t)
	tr, err := transports.Open(context.Background(), "kafka://"+strings.Join(cluster.ListenAddrs(), ",")+"?heartbeat_interval=100ms")
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	topic := "test.order_created" // the outbox's default topic: the event name

	type receipt struct {
		key string
		seq int
	}
	var mu sync.Mutex
	var got []receipt
	var wire atomic.Int64
	consume := func(ctx context.Context, sub message.Subscriber) <-chan struct{} {
		msgs, err := sub.Subscribe(ctx, topic)
		require.NoError(t, err)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for m := range msgs {
				_, v, err := e.reg.Decode(m)
				if err == nil {
					o := v.(*OrderCreated)
					mu.Lock()
					got = append(got, receipt{o.ID, o.Seq})
					mu.Unlock()
				}
				wire.Add(1)
				m.Ack()
			}
		}()
		return done
	}
	var subs []message.Subscriber
	var ctxs []context.CancelFunc
	var dones []<-chan struct{}
	for range 3 {
		sub, err := tr.Subscriber("order-consumers")
		require.NoError(t, err)
		require.NoError(t, sub.(message.SubscribeInitializer).SubscribeInitialize(topic))
		ctx, cancel := context.WithCancel(context.Background())
		subs, ctxs, dones = append(subs, sub), append(ctxs, cancel), append(dones, consume(ctx, sub))
	}
	t.Cleanup(func() {
		for i := range subs {
			ctxs[i]()
			_ = subs[i].Close()
			<-dones[i]
		}
	})

	// Commit events for 8 keys, Seq increasing in commit order.
	ctx := context.Background()
	for n := 0; n < total; n += 100 {
		evts := make([]any, 0, 100)
		for i := n; i < min(n+100, total); i++ {
			evts = append(evts, OrderCreated{ID: fmt.Sprintf("k-%d", i%keys), Seq: i})
		}
		tx := e.begin(ctx)
		require.NoError(t, e.ob.Add(ctx, tx.raw, evts...))
		require.NoError(t, tx.commit())
	}
	first := e.start(tr.Publisher(), fastRelay())
	e.start(tr.Publisher(), fastRelay())
	distinct := func() int {
		mu.Lock()
		defer mu.Unlock()
		seen := map[int]bool{}
		for _, r := range got {
			seen[r.seq] = true
		}
		return len(seen)
	}
	require.Eventually(t, func() bool { return distinct() >= total/3 }, 60*time.Second, time.Millisecond)
	require.NoError(t, first.stop()) // the leader or the standby: either way the other goes on
	ctxs[0]()                        // one consumer leaves: its partitions move
	require.Eventually(t, func() bool { return e.stats().Pending == 0 && distinct() == total }, 90*time.Second, 10*time.Millisecond)

	mu.Lock()
	defer mu.Unlock()
	last := map[string]int{}
	seen := map[int]bool{}
	for _, r := range got {
		if seen[r.seq] {
			continue // a duplicate after a rebalance
		}
		seen[r.seq] = true
		if prev, ok := last[r.key]; ok {
			require.Greater(t, r.seq, prev, "key %s: seq %d arrived after %d", r.key, r.seq, prev)
		}
		last[r.key] = r.seq
	}
	testenv.Figure(t, "2 relays (one stopped), 3 consumers (one left): committed %d / delivered %d / duplicates-on-wire %d / effects %d",
		total, len(seen), int(wire.Load())-len(seen), len(seen))
	require.Len(t, seen, total)
}
