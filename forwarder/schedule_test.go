package forwarder_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/testenv"
)

// arrivals is a publisher that records when each event arrived.
type arrivals struct {
	memBroker
	mu sync.Mutex
	at map[int]time.Time // Seq → arrival
}

func (a *arrivals) Publish(topic string, msgs ...*message.Message) error {
	if err := a.memBroker.Publish(topic, msgs...); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.at == nil {
		a.at = map[int]time.Time{}
	}
	reg := events.NewRegistry()
	events.MustRegister[OrderCreated](reg, "test.order_created")
	for _, m := range msgs {
		var o OrderCreated
		if _, err := reg.DecodeInto(m, &o); err == nil {
			if _, seen := a.at[o.Seq]; !seen {
				a.at[o.Seq] = time.Now()
			}
		}
	}
	return nil
}

func (a *arrivals) arrival(seq int) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.at[seq]
	return t, ok
}

// TestScheduledDelivery: rows scheduled 2 s ahead are published within
// 2.0-2.3 s, in commit order among themselves; rows committed after them
// are not held back; a row due tomorrow is neither pending nor lag.
func TestScheduledDelivery(t *testing.T) {
	t.Parallel()
	for _, b := range allBackends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			broker := &arrivals{}
			e.start(broker, fastRelay())

			ctx := context.Background()
			tomorrow := time.Now().Add(24 * time.Hour)
			tx := e.begin(ctx)
			require.NoError(t, e.ob.Add(ctx, tx.raw, OrderCreated{ID: "far", Seq: 99}, forwarder.DeliverAt(tomorrow)))
			require.NoError(t, tx.commit())

			start := time.Now()
			tx = e.begin(ctx)
			require.NoError(t, e.ob.Add(ctx, tx.raw, OrderCreated{ID: "a", Seq: 1}, OrderCreated{ID: "b", Seq: 2},
				OrderCreated{ID: "c", Seq: 3}, forwarder.DeliverAfter(2*time.Second)))
			require.NoError(t, tx.commit())
			tx = e.begin(ctx)
			require.NoError(t, e.ob.Bus(tx.raw).Publish(ctx, OrderCreated{ID: "d", Seq: 4}, cqrs.DeliverAfter(2*time.Second)))
			require.NoError(t, tx.commit())
			e.add(OrderCreated{ID: "now", Seq: 10}) // committed after them, due at once

			broker.waitCount(t, 1, 5*time.Second)
			at, ok := broker.arrival(10)
			require.True(t, ok, "the row committed after the scheduled ones went first")
			require.Less(t, at.Sub(start), time.Second, "not held back by the scheduled rows")

			require.Eventually(t, func() bool { return e.stats().Pending == 0 }, 5*time.Second, 5*time.Millisecond,
				"the published row is marked; scheduled rows are not pending")
			st := e.stats()
			require.EqualValues(t, 5, st.Scheduled)
			require.Zero(t, st.OldestPendingAge, "a scheduled row is no lag")
			require.WithinDuration(t, start.Add(2*time.Second), st.NextDueAt, 500*time.Millisecond)
			listed, err := e.ob.Scheduled(ctx, 10)
			require.NoError(t, err)
			require.Len(t, listed, 5)
			require.Equal(t, "far", lastOrder(t, listed))
			require.WithinDuration(t, tomorrow, listed[4].DueAt, time.Millisecond)

			broker.waitCount(t, 5, 10*time.Second)
			for seq := 1; seq <= 4; seq++ {
				at, ok := broker.arrival(seq)
				require.True(t, ok)
				took := at.Sub(start)
				require.GreaterOrEqual(t, took, 2*time.Second, "event %d published before it was due", seq)
				require.Less(t, took, 2300*time.Millisecond, "event %d published %s after it was due", seq, took-2*time.Second)
			}
			require.Equal(t, []int{10, 1, 2, 3, 4}, broker.seqs(t), "due rows in commit order")
			testenv.Figure(t, "%s: scheduled 2s ahead, published after %s", b, func() time.Duration { at, _ := broker.arrival(4); return at.Sub(start) }())

			require.Eventually(t, func() bool { return e.stats().Pending == 0 }, 5*time.Second, 5*time.Millisecond)
			st = e.stats()
			require.EqualValues(t, 1, st.Scheduled, "the row due tomorrow waits")
			require.Zero(t, st.OldestPendingAge)
		})
	}
}

func lastOrder(t *testing.T, recs []forwarder.Record) string {
	t.Helper()
	require.NotEmpty(t, recs)
	require.Equal(t, "test.order_created", recs[len(recs)-1].Name)
	return map[bool]string{true: "far"}[recs[len(recs)-1].DueAt.After(time.Now().Add(time.Hour))]
}

// TestScheduleBadInput: negative, absurd and doubled schedules are clear
// errors and write nothing; a publisher that cannot schedule refuses
// scheduled events.
func TestScheduleBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sqlite)
	ctx := context.Background()
	for name, opts := range map[string][]any{
		"negative":  {forwarder.DeliverAfter(-time.Second)},
		"absurd":    {forwarder.DeliverAfter(100 * 365 * 24 * time.Hour)},
		"absurd at": {forwarder.DeliverAt(time.Now().AddDate(50, 0, 0))},
		"zero time": {forwarder.DeliverAt(time.Time{})},
		"twice":     {forwarder.DeliverAfter(time.Second), forwarder.DeliverAfter(2 * time.Second)},
	} {
		tx := e.begin(ctx)
		err := e.ob.Add(ctx, tx.raw, append([]any{OrderCreated{ID: "x"}}, opts...)...)
		require.Error(t, err, name)
		require.NoError(t, tx.rollback())
	}
	require.Zero(t, e.stats().Scheduled+e.stats().Pending, "nothing written")

	// A due time in the past is due now.
	e.add(OrderCreated{ID: "past", Seq: 1}, forwarder.DeliverAt(time.Now().Add(-time.Hour)))
	require.EqualValues(t, 1, e.stats().Pending)
	require.Zero(t, e.stats().Scheduled)

	bus, err := cqrs.NewBus(&memBroker{}, cqrs.BusConfig{Registry: e.reg})
	require.NoError(t, err)
	err = bus.Publish(ctx, OrderCreated{ID: "y"}, cqrs.DeliverAfter(time.Minute))
	require.True(t, errors.Is(err, cqrs.ErrScheduleNotSupported), "%v", err)
	require.NoError(t, bus.Publish(ctx, OrderCreated{ID: "y"}, cqrs.DeliverAfter(0)), "due now needs no scheduler")
}
