package forwarder_test

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/forwarder"
)

func TestRelay_LateCommitIsNotOvertaken(t *testing.T) {
	t.Parallel()
	// SQLite has one writer at a time: two transactions cannot interleave.
	for _, b := range []backend{pgStd, pgPool, mysqlB} {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			ctx := context.Background()
			broker := &memBroker{}
			e.start(broker, fastRelay())

			early := e.begin(ctx) // writes first, commits last
			require.NoError(t, e.ob.Add(ctx, early.raw, orders(0, 2)...))
			late := e.begin(ctx)
			require.NoError(t, e.ob.Add(ctx, late.raw, orders(2, 2)...))
			require.NoError(t, late.commit())

			// The relay must wait for the early transaction rather than
			// publish the committed rows behind it.
			time.Sleep(400 * time.Millisecond)
			require.Empty(t, broker.messages(), "rows of a later transaction overtook an open one")

			require.NoError(t, early.commit())
			broker.waitCount(t, 4, 10*time.Second)
			require.Equal(t, []int{0, 1, 2, 3}, broker.seqs(t))
		})
	}
}

func TestRelay_KeepsCommitOrderUnderConcurrentWriters(t *testing.T) {
	t.Parallel()
	for _, b := range allBackends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			broker := &memBroker{}
			e.start(broker, fastRelay())

			const writers, txs, per = 4, 25, 3
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := range txs {
						// Writer w owns the Seq range [w*1000, w*1000+txs*per).
						e.add(orders(w*1000+i*per, per)...)
					}
				})
			}
			wg.Wait()
			broker.waitCount(t, writers*txs*per, 20*time.Second)

			got := broker.seqs(t)
			require.Len(t, got, writers*txs*per, "duplicates or losses")
			byWriter := map[int][]int{}
			for _, s := range got {
				byWriter[s/1000] = append(byWriter[s/1000], s)
			}
			for w := range writers {
				require.Equal(t, seqRange(w*1000, w*1000+txs*per), byWriter[w], "writer %d out of order", w)
			}
		})
	}
}

func TestRelay_PoisonIsParkedThenDeliveredAfterRequeue(t *testing.T) {
	t.Parallel()
	for _, b := range allBackends {
		for _, batchErrors := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/batch_errors=%v", b, batchErrors), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, b)
				ctx := context.Background()
				broker := &memBroker{batchErrors: batchErrors}
				poison := func(_ string, m *message.Message) error {
					if decodeSeq(t, m) == 5 {
						return rejectedErr{"message too large"}
					}
					return nil
				}
				broker.setFail(poison)
				e.add(orders(0, 10)...)
				e.start(broker, fastRelay()) // MaxAttempts 3

				require.Eventually(t, func() bool { return e.stats().Failed == 1 }, 10*time.Second, 5*time.Millisecond)
				require.Eventually(t, func() bool { return e.stats().Published == 9 }, 10*time.Second, 5*time.Millisecond)
				failed, err := e.ob.Failed(ctx, 10)
				require.NoError(t, err)
				require.Len(t, failed, 1)
				f := failed[0]
				require.Equal(t, "test.order_created", f.Name)
				require.Equal(t, "test.order_created", f.Topic)
				require.Equal(t, 3, f.Attempts)
				require.Contains(t, f.LastError, "message too large")
				require.WithinDuration(t, time.Now(), f.CreatedAt, time.Minute)

				// The relay went on without it.
				e.add(orders(10, 2)...)
				require.Eventually(t, func() bool { return e.stats().Published == 11 }, 10*time.Second, 5*time.Millisecond)
				require.NotContains(t, broker.seqs(t), 5)

				broker.setFail(nil)
				n, err := e.ob.Requeue(ctx, f.EventID, "no-such-event")
				require.NoError(t, err)
				require.EqualValues(t, 1, n, "only the failed row moves; an unknown id is ignored")
				n, err = e.ob.Requeue(ctx, f.EventID)
				require.NoError(t, err)
				require.Zero(t, n, "a row that is no longer failed is not moved again")
				require.Eventually(t, func() bool { return e.stats().Published == 12 }, 10*time.Second, 5*time.Millisecond)
				got := broker.seqs(t)
				require.Contains(t, got, 5)
				require.ElementsMatch(t, seqRange(0, 12), dedupe(got))
				st := e.stats()
				require.Zero(t, st.Failed)
				require.Zero(t, st.Pending)
			})
		}
	}
}

func dedupe(xs []int) []int {
	seen := map[int]bool{}
	var out []int
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	sort.Ints(out)
	return out
}

func TestRelay_OutageCountsNoAttempt(t *testing.T) {
	t.Parallel()
	cases := map[string]func(string, *message.Message) error{
		// Errors that say the broker is unavailable.
		"unavailable": func(string, *message.Message) error { return unavailableErr{"connection refused"} },
		// Plain errors on every message: nothing shows they are about the
		// messages, so they must not use up the retry budget either.
		"unattributed": func(string, *message.Message) error { return errPlain },
	}
	for name, outage := range cases {
		for _, batchErrors := range []bool{true, false} {
			if name == "unattributed" && batchErrors {
				continue // a publisher that names the failed messages attributes them
			}
			t.Run(fmt.Sprintf("%s/batch_errors=%v", name, batchErrors), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, pgStd)
				ctx := context.Background()
				broker := &memBroker{batchErrors: batchErrors}
				broker.setFail(outage)
				e.add(orders(0, 20)...)
				cfg := fastRelay()
				cfg.MaxAttempts = 1 // a single counted attempt would park a row
				e.start(broker, cfg)

				require.Eventually(t, func() bool {
					broker.mu.Lock()
					defer broker.mu.Unlock()
					return broker.calls >= 5
				}, 10*time.Second, 5*time.Millisecond)
				pending, err := e.ob.Pending(ctx, 100)
				require.NoError(t, err)
				require.Len(t, pending, 20)
				for _, p := range pending {
					require.Zero(t, p.Attempts)
				}
				require.Zero(t, e.stats().Failed)

				broker.setFail(nil) // the broker is back; the relay resumes alone
				broker.waitCount(t, 20, 10*time.Second)
				require.Equal(t, seqRange(0, 20), broker.seqs(t))
				require.Eventually(t, func() bool { return e.stats().Published == 20 }, 5*time.Second, 5*time.Millisecond)
				require.Zero(t, e.stats().Failed)
			})
		}
	}
}

func TestRelay_NackedMessagesAreRetriedNotDelivered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgStd)
	broker := &memBroker{batchErrors: true}
	var n atomic.Int64
	// Every third message is nacked (back-pressure) for the first 300.
	broker.setFail(func(string, *message.Message) error {
		if c := n.Add(1); c <= 300 && c%3 == 0 {
			return unavailableErr{"nack: queue full"}
		}
		return nil
	})
	for i := 0; i < 300; i += 50 {
		e.add(orders(i, 50)...)
	}
	cfg := fastRelay()
	cfg.MaxAttempts = 1
	e.start(broker, cfg)
	require.Eventually(t, func() bool { return e.stats().Published == 300 }, 20*time.Second, 5*time.Millisecond)
	require.Zero(t, e.stats().Failed)
	require.ElementsMatch(t, seqRange(0, 300), broker.seqs(t), "every event exactly once: nacked ones were not counted as delivered")
}

func TestRelay_TwoRelaysLoseNothingAndDuplicateNothing(t *testing.T) {
	t.Parallel()
	for _, b := range allBackends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			// A second Outbox value on the same tables, as in another process.
			other := *e
			other.reg = newRegistry(t)
			var err error
			cfg := forwarder.OutboxConfig{Registry: other.reg, Name: e.name}
			if e.pool != nil {
				other.ob, err = forwarder.NewOutboxPgx(e.pool, cfg)
			} else {
				other.ob, err = forwarder.NewOutbox(e.db, cfg)
			}
			require.NoError(t, err)

			b1, b2 := &memBroker{}, &memBroker{}
			// A stopped relay releases its SQLite lease at once; a long
			// lease keeps a relay starved of CPU by the parallel tests
			// from losing it mid-batch (which is a takeover, and
			// duplicates a batch, as at-least-once allows).
			relayCfg := fastRelay()
			relayCfg.LeaseTTL = 10 * time.Second
			r1 := e.start(b1, relayCfg)
			r2 := other.start(b2, relayCfg)

			const total = 600
			for i := 0; i < total/2; i += 30 {
				e.add(orders(i, 30)...)
			}
			require.Eventually(t, func() bool { return len(b1.messages())+len(b2.messages()) >= total/2 }, 20*time.Second, 5*time.Millisecond)
			// Stop whichever is active; the other takes over.
			if len(b1.messages()) > 0 {
				require.NoError(t, r1.stop())
			} else {
				require.NoError(t, r2.stop())
			}
			for i := total / 2; i < total; i += 30 {
				e.add(orders(i, 30)...)
			}
			require.Eventually(t, func() bool { return len(b1.messages())+len(b2.messages()) >= total }, 20*time.Second, 5*time.Millisecond)
			require.Eventually(t, func() bool { return e.stats().Published == total }, 10*time.Second, 5*time.Millisecond)

			got := append(b1.seqs(t), b2.seqs(t)...)
			sort.Ints(got)
			require.Equal(t, seqRange(0, total), got, "no loss and no duplicate")
			require.NotEmpty(t, b1.messages())
			require.NotEmpty(t, b2.messages())
		})
	}
}

// blockingBroker holds every Publish until released or, when ctxAware,
// until the messages' context ends.
type blockingBroker struct {
	memBroker
	entered  chan struct{}
	release  chan struct{}
	ctxAware bool
	once     sync.Once
}

func (b *blockingBroker) Publish(topic string, msgs ...*message.Message) error {
	b.once.Do(func() { close(b.entered) })
	select {
	case <-b.release:
	case <-msgs[0].Context().Done():
		if b.ctxAware {
			return msgs[0].Context().Err()
		}
		<-b.release
	}
	return b.memBroker.Publish(topic, msgs...)
}

func TestRelay_GracefulStop(t *testing.T) {
	t.Parallel()
	t.Run("finishes the in-flight batch", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, pgStd)
		e.add(orders(0, 10)...)
		broker := &blockingBroker{entered: make(chan struct{}), release: make(chan struct{})}
		r := e.start(broker, fastRelay())
		<-broker.entered
		stopped := make(chan error, 1)
		go func() { stopped <- r.stop() }()
		time.Sleep(100 * time.Millisecond)
		select {
		case <-stopped:
			t.Fatal("Run returned with a batch in flight")
		default:
		}
		close(broker.release)
		require.NoError(t, <-stopped)
		require.NoError(t, r.stop(), "stopping twice is fine")
		st := e.stats()
		require.Equal(t, int64(10), st.Published, "confirmed rows are marked before Run returns")
		require.Equal(t, seqRange(0, 10), broker.seqs(t))
	})
	t.Run("releases a batch not confirmed in time", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, pgStd)
		e.add(orders(0, 10)...)
		broker := &blockingBroker{entered: make(chan struct{}), release: make(chan struct{}), ctxAware: true}
		cfg := fastRelay()
		cfg.StopTimeout = 200 * time.Millisecond
		r := e.start(broker, cfg)
		<-broker.entered
		began := time.Now()
		require.NoError(t, r.stop())
		require.Less(t, time.Since(began), 2*time.Second)
		st := e.stats()
		require.Equal(t, int64(10), st.Pending, "unconfirmed rows stay pending for the next relay")
		require.Zero(t, st.Failed)

		// The next relay delivers them.
		broker2 := &memBroker{}
		e.start(broker2, fastRelay())
		broker2.waitCount(t, 10, 10*time.Second)
	})
}

func TestRelay_RunTwiceConcurrently(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sqlite)
	relay, err := forwarder.NewRelay(e.ob, &memBroker{}, fastRelay())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- relay.Run(ctx) }()
	go func() { done <- relay.Run(ctx) }()
	// The loser returns at once while the winner runs until ctx ends.
	require.ErrorIs(t, <-done, forwarder.ErrRelayRunning)
	cancel()
	require.NoError(t, <-done)
	// It can run again after it returned.
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { done <- relay.Run(ctx2) }()
	cancel2()
	require.NoError(t, <-done)
}

func TestRelay_WakesOnCommit(t *testing.T) {
	t.Parallel()
	for _, b := range []backend{pgStd, pgPool} {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			broker := &memBroker{}
			cfg := fastRelay()
			cfg.PollInterval = time.Minute // only a notification can wake it in time
			cfg.MinPollInterval = time.Minute
			e.start(broker, cfg)
			time.Sleep(300 * time.Millisecond) // let it go idle
			for i := range 3 {
				began := time.Now()
				e.add(orders(i, 1)...)
				broker.waitCount(t, i+1, 5*time.Second)
				require.Less(t, time.Since(began), 2*time.Second)
			}
		})
	}
}

func TestRelay_PollsAdaptively(t *testing.T) {
	t.Parallel()
	for _, b := range []backend{mysqlB, sqlite, pgPq} {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			broker := &memBroker{}
			cfg := fastRelay()
			cfg.PollInterval = 300 * time.Millisecond
			e.start(broker, cfg)
			for i := range 5 {
				e.add(orders(i, 1)...)
				broker.waitCount(t, i+1, 5*time.Second)
			}
			require.Equal(t, seqRange(0, 5), broker.seqs(t))
		})
	}
}

// Transaction ids are compared as numbers: 9 < 10 < 100 (as text, "10" <
// "100" < "9").
func TestRelay_OrdersByTransactionIDNumerically(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgStd)
	ctx := context.Background()
	for i, xid := range []string{"9", "10", "100"} {
		e.add(orders(i, 1)...)
		require.NoError(t, e.exec(ctx, `UPDATE "`+e.ob.Table()+`" SET transaction_id = $1::xid8
			WHERE "offset" = (SELECT max("offset") FROM "`+e.ob.Table()+`")`, xid))
	}
	broker := &memBroker{}
	e.start(broker, fastRelay())
	broker.waitCount(t, 3, 10*time.Second)
	require.Equal(t, []int{0, 1, 2}, broker.seqs(t))
}

func TestRelay_UndecodableRowIsParkedAtOnce(t *testing.T) {
	t.Parallel()
	for _, b := range allBackends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			ctx := context.Background()
			e.add(orders(0, 1)...)
			// A row not written by Add nor by a Watermill forwarder publisher.
			q := `INSERT INTO "` + e.ob.Table() + `" (uuid, payload, metadata, event_name, topic) VALUES ('bad-row', '{"not":"an envelope"}', '{}', 'x', 'x')`
			if b == sqlite {
				q = `INSERT INTO "` + e.ob.Table() + `" (uuid, payload, metadata, event_name, topic, created_at) VALUES ('bad-row', '{"not":"an envelope"}', '{}', 'x', 'x', 0)`
			}
			if b == mysqlB {
				q = strings.ReplaceAll(q, `"`+e.ob.Table()+`"`, "`"+e.ob.Table()+"`")
			}
			require.NoError(t, e.exec(ctx, q))
			e.add(orders(1, 1)...)

			broker := &memBroker{}
			e.start(broker, fastRelay())
			broker.waitCount(t, 2, 10*time.Second)
			require.Eventually(t, func() bool { return e.stats().Failed == 1 }, 5*time.Second, 5*time.Millisecond)
			failed, err := e.ob.Failed(ctx, 10)
			require.NoError(t, err)
			require.Equal(t, "bad-row", failed[0].EventID)
			require.Equal(t, 1, failed[0].Attempts)
			require.Contains(t, failed[0].LastError, "undecodable row")
			require.Equal(t, []int{0, 1}, broker.seqs(t))
		})
	}
}

// TestRelay_MySQLWaitsForAGapInTheOffsets reproduces, on MySQL, an insert
// whose AUTO_INCREMENT offset is taken but whose row is not in the index
// yet, while a later transaction's row is committed: the relay holds the
// later row until the gap fills, then relays both in offset order; a gap
// that never fills (a rolled-back insert) holds the rows after it for
// GapTimeout only.
func TestRelay_MySQLWaitsForAGapInTheOffsets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mysqlB)
	ctx := context.Background()
	tbl := "`" + e.ob.Table() + "`"
	broker := &memBroker{}
	cfg := fastRelay()
	cfg.GapTimeout = 2 * time.Second
	e.start(broker, cfg)

	e.add(orders(0, 1)...)
	broker.waitCount(t, 1, 10*time.Second)
	var last int64
	require.NoError(t, e.db.QueryRow("SELECT MAX(`offset`) FROM "+tbl).Scan(&last))

	// addAt commits a transaction whose one row ends at offset at.
	addAt := func(seq int, at int64) {
		t.Helper()
		tx := e.begin(ctx)
		require.NoError(t, e.ob.Add(ctx, tx.raw, orders(seq, 1)...))
		_, err := tx.raw.(*sql.Tx).ExecContext(ctx, "UPDATE "+tbl+" SET `offset` = ? WHERE `offset` = (SELECT m FROM (SELECT MAX(`offset`) AS m FROM "+tbl+") AS x)", at)
		require.NoError(t, err)
		require.NoError(t, tx.commit())
		// Later inserts take offsets well above the ones placed by hand.
		require.NoError(t, e.exec(ctx, "ALTER TABLE "+tbl+" AUTO_INCREMENT = "+strconv.FormatInt(at+100, 10)))
	}

	addAt(2, last+2) // committed, but offset last+1 is missing
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, []int{0}, broker.seqs(t), "a row after a gap was relayed before GapTimeout")
	addAt(1, last+1) // the gap fills
	broker.waitCount(t, 3, 10*time.Second)
	require.Equal(t, []int{0, 1, 2}, broker.seqs(t))

	// A gap that never fills: the row after it goes after GapTimeout.
	began := time.Now()
	addAt(3, last+5)
	broker.waitCount(t, 4, 10*time.Second)
	waited := time.Since(began)
	t.Logf("a permanent gap held the next row %v (GapTimeout %v)", waited.Round(time.Millisecond), cfg.GapTimeout)
	require.GreaterOrEqual(t, waited, cfg.GapTimeout-100*time.Millisecond)
	require.Equal(t, []int{0, 1, 2, 3}, broker.seqs(t))
}
