package forwarder_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/testenv"
)

// childEnv names the outbox a re-executed test binary relays (see TestMain).
const childEnv = "EVENTKIT_FORWARDER_CHILD_RELAY"

// killAfter is how many events the child relay's sink confirms before it
// blocks for the kill.
const killAfter = 175

// sqlSink is a durable "broker": Publish inserts the messages into a table
// and returns once they are committed, like a broker's confirm. Once
// blockAfter messages are in (when set), every Publish blocks after its
// insert and never returns: a relay killed then has confirmed rows it has
// not marked, however slow the machine.
type sqlSink struct {
	db         *sql.DB
	table      string
	blockAfter int64
	n          *atomic.Int64
}

func (s sqlSink) Publish(_ string, msgs ...*message.Message) error {
	var b strings.Builder
	args := make([]any, 0, len(msgs))
	b.WriteString(`INSERT INTO "` + s.table + `" (event_id) VALUES `)
	for i, m := range msgs {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "($%d)", i+1)
		args = append(args, m.UUID)
	}
	if _, err := s.db.Exec(b.String(), args...); err != nil {
		return err
	}
	if s.blockAfter > 0 && s.n.Add(int64(len(msgs))) >= s.blockAfter {
		select {} // confirmed, never returns: the relay cannot mark it
	}
	return nil
}

func (sqlSink) Close() error { return nil }

// runChildRelay relays the outbox named by childEnv into its sink until it
// is killed.
func runChildRelay() int {
	name := os.Getenv(childEnv)
	return relayChild(name, 50, func(db *sql.DB) message.Publisher {
		return sqlSink{db: db, table: "sink_" + name, blockAfter: killAfter, n: new(atomic.Int64)}
	})
}

// relayChild is the body of a re-executed test binary that relays outbox
// name into the publisher sink makes, batchSize rows at a time, until it
// is killed (or stopped with SIGTERM). It returns the exit code.
func relayChild(name string, batchSize int, sink func(*sql.DB) message.Publisher) int {
	db, err := sql.Open("pgx", testenv.PostgresURL())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer db.Close()
	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: events.NewRegistry(), Name: name})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg := fastRelay()
	cfg.BatchSize = batchSize
	relay, err := forwarder.NewRelay(ob, sink(db), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := relay.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func TestRelayKilledMidBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgStd)
	ctx := context.Background()
	sink := "sink_" + e.name
	require.NoError(t, e.exec(ctx, `CREATE TABLE "`+sink+`" (id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL)`))
	t.Cleanup(func() { _ = e.exec(context.Background(), `DROP TABLE IF EXISTS "`+sink+`"`) })

	const total = 1000
	for i := 0; i < total; i += 100 {
		e.add(orders(i, 100)...)
	}
	var want []string
	rs, err := e.db.Query(`SELECT uuid FROM "` + e.ob.Table() + `"`)
	require.NoError(t, err)
	for rs.Next() {
		var id string
		require.NoError(t, rs.Scan(&id))
		want = append(want, id)
	}
	require.NoError(t, rs.Err())
	require.Len(t, want, total)

	sinkCount := func() int {
		var n int
		require.NoError(t, e.db.QueryRow(`SELECT count(*) FROM "`+sink+`"`).Scan(&n))
		return n
	}

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"="+e.name)
	child.Stderr = os.Stderr
	require.NoError(t, child.Start())
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = child.Process.Kill()
			_ = child.Wait()
		}
	})

	// Let it relay a few batches, then kill it while a batch is confirmed
	// by the sink but not marked (the sink blocks after confirming it).
	require.Eventually(t, func() bool { return sinkCount() >= killAfter }, 20*time.Second, time.Millisecond)
	time.Sleep(100 * time.Millisecond) // let it mark what it can
	require.NoError(t, child.Process.Kill())
	_ = child.Wait()
	killed = true

	inSink := sinkCount()
	st := e.stats()
	t.Logf("killed: %d in sink, %d marked published", inSink, st.Published)
	require.Greater(t, int64(inSink), st.Published, "the kill should land after a confirm and before its mark")
	require.Less(t, inSink, total, "the child should not have finished")

	// A new relay takes over (the advisory lock died with the child's
	// connection) and delivers the rest; nothing is lost.
	cfg := fastRelay()
	cfg.BatchSize = 50
	e.start(sqlSink{db: e.db, table: sink}, cfg)
	require.Eventually(t, func() bool { return e.stats().Pending == 0 }, 30*time.Second, 10*time.Millisecond)

	got := map[string]int{}
	rs, err = e.db.Query(`SELECT event_id FROM "` + sink + `"`)
	require.NoError(t, err)
	for rs.Next() {
		var id string
		require.NoError(t, rs.Scan(&id))
		got[id]++
	}
	require.NoError(t, rs.Err())
	for _, id := range want {
		require.GreaterOrEqual(t, got[id], 1, "event %s lost", id)
	}
	require.Len(t, got, total)
	require.Equal(t, int64(total), e.stats().Published)
}
