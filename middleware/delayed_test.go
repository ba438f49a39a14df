package middleware_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/kafkatest"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
	"github.com/b2131a45/eventkit/transports/amqp"
)

// Delayed is the event of the delayed-retry tests.
type Delayed struct {
	ID string `json:"id"`
}

// delayedRun is one consumer process of the delayed-retry tests: a router
// with the Default chain, a handler "slow" that fails the first failFor
// calls of event "x", and a handler "other" in another group.
type delayedRun struct {
	mu      sync.Mutex
	calls   map[string]int       // "slow" calls by event
	done    map[string]time.Time // when "slow" succeeded, by event
	other   map[string]int       // "other" calls by event
	ids     map[string]string    // event id seen by "slow", by event
	router  *message.Router
	tr      *transports.Transport
	chain   *middleware.Chain
	failFor int
}

func (d *delayedRun) doneAt(id string) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.done[id]
	return t, ok
}

// startDelayed starts a consumer over url whose chain has levels.
func startDelayed(t *testing.T, url, topic string, levels []time.Duration, failFor int, shared *delayedRun) *delayedRun {
	t.Helper()
	ctx := context.Background()
	tr, err := transports.Open(ctx, url)
	if err != nil {
		testenv.Unavailable(t, url, err)
	}
	reg := events.NewRegistry()
	require.NoError(t, events.Register[Delayed](reg, "test.delayed"))
	d := shared
	if d == nil {
		d = &delayedRun{calls: map[string]int{}, done: map[string]time.Time{}, other: map[string]int{}, ids: map[string]string{}}
	}
	d.tr, d.failFor = tr, failFor
	inbox := memoryInbox(t, 0)
	d.chain, err = middleware.Default(middleware.DefaultConfig{
		Publisher: tr.Publisher(), Subscribers: tr.Subscriber, Inbox: inbox, Logger: discard,
		Retry:        middleware.RetryConfig{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond},
		DelayedRetry: middleware.DelayedRetryConfig{Levels: levels},
	})
	require.NoError(t, err)
	d.router, err = message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	d.router.AddMiddleware(d.chain.Middlewares()...)
	proc, err := cqrs.NewProcessor(d.router, tr.Subscriber, cqrs.ProcessorConfig{Registry: reg, DeadLetter: tr.Publisher(),
		Topic: func(string) string { return topic }})
	require.NoError(t, err)
	require.NoError(t, proc.AddHandlers(
		cqrs.NewHandler("slow", func(ctx context.Context, e *Delayed) error {
			env, _ := events.EnvelopeFromContext(ctx)
			d.mu.Lock()
			defer d.mu.Unlock()
			d.calls[e.ID]++
			if prev, ok := d.ids[e.ID]; ok && prev != env.ID {
				return middleware.Permanent(errors.New("a delayed retry changed the event id"))
			}
			d.ids[e.ID] = env.ID
			if e.ID == "x" && d.calls[e.ID] <= d.failFor {
				return errors.New("downstream is down")
			}
			if e.ID == "p" {
				return middleware.Permanent(errors.New("cannot ever handle this"))
			}
			d.done[e.ID] = time.Now()
			return nil
		}),
		cqrs.NewHandler("other", func(_ context.Context, e *Delayed) error {
			d.mu.Lock()
			defer d.mu.Unlock()
			d.other[e.ID]++
			return nil
		}),
	))
	startRouter(t, d.router)
	return d
}

func (d *delayedRun) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, d.router.Close())
	require.NoError(t, d.tr.Close())
}

// TestDelayedRetryFreesTheConsumer runs a handler that fails through its
// immediate retries and its first delayed round, then succeeds, on RabbitMQ
// and on kfake: it is called 3 + 3 + 1 times with the same event id, its
// effect happens once, the other group gets the event once, and 1,000 other
// events behind it on the same single consumer all finish while it waits.
func TestDelayedRetryFreesTheConsumer(t *testing.T) {
	t.Parallel()
	for name, url := range map[string]func(t *testing.T) string{
		"amqp":  func(*testing.T) string { return testenv.AMQPURL() },
		"kafka": func(t *testing.T) string { return "kafka://" + strings.Join(kafkatest.Cluster(t).ListenAddrs(), ",") },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			topic := testenv.Name(t, "delayed")
			// The first level is long enough that the 1,000 others finish
			// inside it even on a loaded CI machine (2.3 s once): were they
			// held behind the delayed event, they would finish after it.
			levels := []time.Duration{4 * time.Second, 6 * time.Second}
			if name == "amqp" {
				t.Cleanup(func() { deleteDelayQueues(t, topic, []string{"slow", "other"}, levels) })
			}
			d := startDelayed(t, url(t), topic, levels, 6, nil)
			defer d.stop(t)
			bus, err := cqrs.NewBus(d.tr.Publisher(), cqrs.BusConfig{Registry: registryOf(t), Topic: func(string) string { return topic }})
			require.NoError(t, err)

			start := time.Now()
			ctx := events.WithCorrelationID(context.Background(), "conv-x")
			require.NoError(t, bus.Publish(ctx, Delayed{ID: "x"}))
			others := make([]any, 1000)
			for i := range others {
				others[i] = Delayed{ID: "e" + string(rune('a'+i%26)) + strings.Repeat("-", i/26)}
			}
			require.NoError(t, bus.Publish(context.Background(), others...))

			require.Eventually(t, func() bool {
				d.mu.Lock()
				defer d.mu.Unlock()
				return len(d.done) >= 1001 && len(d.other) >= 1001
			}, 60*time.Second, 10*time.Millisecond)
			xDone, _ := d.doneAt("x")
			tookX := xDone.Sub(start)
			var lastOther time.Time
			d.mu.Lock()
			for id, at := range d.done {
				if id != "x" && at.After(lastOther) {
					lastOther = at
				}
			}
			calls, otherX := d.calls["x"], d.other["x"]
			d.mu.Unlock()
			testenv.Figure(t, "%s: the failing event succeeded after %s; the 1,000 others finished %s after the start", name, tookX, lastOther.Sub(start))
			require.Less(t, lastOther.Sub(start), levels[0], "the others do not wait for the delayed event")
			require.GreaterOrEqual(t, tookX, levels[0]+levels[1], "two delayed rounds passed")
			require.Less(t, tookX, levels[0]+levels[1]+10*time.Second)
			require.Equal(t, 7, calls, "3 immediate attempts, 3 after the first delay, 1 after the second")
			require.Equal(t, 1, otherX, "the other group got the event once: a delay is for the failing group only")
			require.Equal(t, int64(2), d.chain.DelayedRetry.Delayed())
			require.Zero(t, d.chain.DeadLettered())
		})
	}
}

func registryOf(t *testing.T) *events.Registry {
	reg := events.NewRegistry()
	require.NoError(t, events.Register[Delayed](reg, "test.delayed"))
	return reg
}

// TestDelayedRetryExhaustedGoesToTheDLQ: after the last level the message is
// dead-lettered with both counts and the last error; a permanent error skips
// the delays.
func TestDelayedRetryExhaustedGoesToTheDLQ(t *testing.T) {
	t.Parallel()
	topic := testenv.Name(t, "delayed")
	levels := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond}
	d := startDelayed(t, "mem://", topic, levels, 1<<30, nil)
	defer d.stop(t)
	dlq := collect(t, d.tr.Subscriber, "probe", middleware.DeadLetterTopic(topic))
	bus, err := cqrs.NewBus(d.tr.Publisher(), cqrs.BusConfig{Registry: registryOf(t), Topic: func(string) string { return topic }})
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, bus.Publish(context.Background(), Delayed{ID: "x"}, Delayed{ID: "p"}))

	got := dlq.wait(t, 2)
	byEvent := map[string]middleware.DeadLetter{}
	for _, m := range got {
		dl, err := middleware.DeadLetterFromMessage(m)
		require.NoError(t, err)
		var e Delayed
		_, err = registryOf(t).DecodeInto(m, &e)
		require.NoError(t, err)
		byEvent[e.ID] = dl
	}
	x, p := byEvent["x"], byEvent["p"]
	require.Equal(t, middleware.ReasonRetriesExhausted, x.Reason)
	require.Equal(t, 3, x.Attempts, "the attempts of the last round")
	require.Equal(t, 2, x.DelayedAttempts, "both delayed rounds")
	require.Contains(t, x.Error, "downstream is down")
	require.Equal(t, "slow", x.Handler)
	require.GreaterOrEqual(t, x.FailedAt.Sub(start), levels[0]+levels[1])
	require.Equal(t, middleware.ReasonPermanent, p.Reason)
	require.Zero(t, p.DelayedAttempts, "a permanent error skips the delays")
	require.Equal(t, 1, p.Attempts)
	d.mu.Lock()
	defer d.mu.Unlock()
	require.Equal(t, 9, d.calls["x"])
	require.Equal(t, 1, d.other["x"])

	// A returning message whose count of delayed rounds is not a count is a
	// dead letter with its reason, not a crash or a loop.
	bad := message.NewMessage(watermill.NewUUID(), []byte(`{"id":"bad"}`))
	bad.Metadata.Set(events.KeyName, "test.delayed")
	bad.Metadata.Set(middleware.KeyDelayedAttempts, "many")
	badDue := message.NewMessage(watermill.NewUUID(), []byte(`{"id":"bad-due"}`))
	badDue.Metadata.Set(events.KeyName, "test.delayed")
	badDue.Metadata.Set(middleware.KeyDelayedAttempts, "1")
	badDue.Metadata.Set(events.KeyDeliverAt, "soon")
	require.NoError(t, d.tr.Publisher().Publish(topic, bad, badDue))
	seen := 0
	for _, m := range dlq.wait(t, 6) { // both, for each of the two handlers
		if m.UUID != bad.UUID && m.UUID != badDue.UUID {
			continue
		}
		seen++
		dl, err := middleware.DeadLetterFromMessage(m)
		require.NoError(t, err)
		require.Equal(t, middleware.ReasonPermanent, dl.Reason)
		if m.UUID == bad.UUID {
			require.Contains(t, dl.Error, middleware.KeyDelayedAttempts)
		} else {
			require.Contains(t, dl.Error, events.KeyDeliverAt)
		}
	}
	require.Equal(t, 4, seen)
}

// TestDelayedRetrySurvivesRestarts: an event waiting in a delay level comes
// back on time after its consumer process was stopped and a new one
// started, on RabbitMQ (with the broker stopped and started too, on the
// throw-away fault node) and on kfake.
func TestDelayedRetrySurvivesRestarts(t *testing.T) {
	t.Parallel()
	levels := []time.Duration{4 * time.Second}
	t.Run("amqp", func(t *testing.T) {
		t.Parallel()
		testenv.LockFaultNode(t)
		url := testenv.AMQPFaultURL()
		probe, err := amqp091.Dial(url)
		if err != nil {
			testenv.Unavailable(t, "the fault RabbitMQ node (.ci/rabbitmq-fault-node)", err)
		}
		_ = probe.Close()
		t.Cleanup(func() {
			_ = exec.Command("rabbitmqctl", "-q", "-n", testenv.AMQPFaultNode(), "start_app").Run()
		})
		topic := testenv.Name(t, "restart")
		d := startDelayed(t, url, topic, levels, 3, nil)
		bus, err := cqrs.NewBus(d.tr.Publisher(), cqrs.BusConfig{Registry: registryOf(t), Topic: func(string) string { return topic }})
		require.NoError(t, err)
		start := time.Now()
		require.NoError(t, bus.Publish(context.Background(), Delayed{ID: "x"}))
		require.Eventually(t, func() bool { return d.chain.DelayedRetry.Delayed() == 1 }, 20*time.Second, 5*time.Millisecond)
		d.stop(t)
		for _, args := range [][]string{{"stop_app"}, {"start_app"}, {"await_startup"}} {
			out, err := exec.Command("rabbitmqctl", append([]string{"-q", "-n", testenv.AMQPFaultNode()}, args...)...).CombinedOutput()
			require.NoError(t, err, "rabbitmqctl %v: %s", args, out)
		}
		t.Logf("consumer stopped and RabbitMQ restarted %s after the delay began", time.Since(start))
		d = startDelayed(t, url, topic, levels, 3, d)
		defer d.stop(t)
		require.Eventually(t, func() bool { _, ok := d.doneAt("x"); return ok }, 30*time.Second, 10*time.Millisecond)
		at, _ := d.doneAt("x")
		took := at.Sub(start)
		testenv.Figure(t, "amqp: redelivered and handled %s after publishing (delay %s)", took, levels[0])
		require.GreaterOrEqual(t, took, levels[0])
		require.Less(t, took, levels[0]+10*time.Second)
		deleteDelayQueuesAt(t, url, topic, []string{"slow", "other"}, levels)
	})
	t.Run("kafka", func(t *testing.T) {
		t.Parallel()
		url := "kafka://" + strings.Join(kafkatest.Cluster(t).ListenAddrs(), ",")
		topic := testenv.Name(t, "restart")
		d := startDelayed(t, url, topic, levels, 3, nil)
		bus, err := cqrs.NewBus(d.tr.Publisher(), cqrs.BusConfig{Registry: registryOf(t), Topic: func(string) string { return topic }})
		require.NoError(t, err)
		start := time.Now()
		require.NoError(t, bus.Publish(context.Background(), Delayed{ID: "x"}))
		require.Eventually(t, func() bool { return d.chain.DelayedRetry.Delayed() == 1 }, 20*time.Second, 5*time.Millisecond)
		d.stop(t)
		d = startDelayed(t, url, topic, levels, 3, d)
		defer d.stop(t)
		require.Eventually(t, func() bool { _, ok := d.doneAt("x"); return ok }, 30*time.Second, 10*time.Millisecond)
		at, _ := d.doneAt("x")
		took := at.Sub(start)
		testenv.Figure(t, "kafka: redelivered and handled %s after publishing (delay %s)", took, levels[0])
		require.GreaterOrEqual(t, took, levels[0])
		require.Less(t, took, levels[0]+10*time.Second)
	})
}

// deleteDelayQueues deletes the queues and exchanges of a delayed-retry test
// on the shared RabbitMQ.
func deleteDelayQueues(t *testing.T, topic string, groups []string, levels []time.Duration) {
	deleteDelayQueuesAt(t, testenv.AMQPURL(), topic, groups, levels)
}

func deleteDelayQueuesAt(t *testing.T, url, topic string, groups []string, levels []time.Duration) {
	conn, err := amqp091.Dial(url)
	if err != nil {
		return
	}
	defer conn.Close()
	var queues []string
	for _, g := range groups {
		queues = append(queues, amqp.QueueName(topic, g))
		for _, l := range levels {
			queues = append(queues, amqp.DelayQueueName(topic, g, l))
		}
	}
	queues = append(queues, amqp.QueueName(middleware.DeadLetterTopic(topic), middleware.DeadLetterGroupDefault))
	for _, q := range queues {
		if ch, err := conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(q, false, false, false)
			_ = ch.Close()
		}
	}
	for _, x := range []string{topic, middleware.DeadLetterTopic(topic)} {
		if ch, err := conn.Channel(); err == nil {
			_ = ch.ExchangeDelete(x, false, false)
			_ = ch.Close()
		}
	}
}
