package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
)

func newPoison(t testing.TB, pub message.Publisher, cfg middleware.PoisonQueueConfig) *middleware.PoisonQueue {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = discard
	}
	pq, err := middleware.NewPoisonQueue(pub, cfg)
	require.NoError(t, err)
	return pq
}

// requireDeadLetter checks every dead-letter field of dl against the
// original message.
func requireDeadLetter(t testing.TB, orig, dl *message.Message, topic, handler string, reason middleware.Reason, attempts int) middleware.DeadLetter {
	t.Helper()
	require.Equal(t, orig.UUID, dl.UUID, "event id kept")
	require.Equal(t, string(orig.Payload), string(dl.Payload), "payload kept")
	for k, v := range orig.Metadata {
		require.Equal(t, v, dl.Metadata.Get(k), "metadata %s kept", k)
	}
	require.Equal(t, string(reason), dl.Metadata.Get(middleware.KeyReason))
	require.NotEmpty(t, dl.Metadata.Get(middleware.KeyError))
	require.Equal(t, strconv.Itoa(attempts), dl.Metadata.Get(middleware.KeyAttempts))
	require.Equal(t, topic, dl.Metadata.Get(middleware.KeyOriginalTopic))
	require.Equal(t, handler, dl.Metadata.Get(middleware.KeyHandler))
	at, err := time.Parse(time.RFC3339Nano, dl.Metadata.Get(middleware.KeyFailedAt))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), at, time.Minute)
	require.Equal(t, time.UTC, at.Location())
	parsed, err := middleware.DeadLetterFromMessage(dl)
	require.NoError(t, err)
	return parsed
}

func TestPoisonQueue(t *testing.T) {
	t.Parallel()

	t.Run("RetriesSpentGoesToDLQWithEveryFieldAndOthersFlow", func(t *testing.T) {
		t.Parallel()
		reg := newRegistry(t)
		tr := newMemory(t)
		topic := testenv.Name(t, "orders")
		pq := newPoison(t, tr.Publisher(), middleware.PoisonQueueConfig{})
		retry := fastRetry(t, middleware.RetryConfig{MaxAttempts: 3})
		var mu sync.Mutex
		var handled []string
		calls := map[string]int{}
		sub, err := tr.Subscriber("billing")
		require.NoError(t, err)
		runRouter(t, sub, "billing.charge", topic, func(msg *message.Message) error {
			mu.Lock()
			defer mu.Unlock()
			calls[msg.UUID]++
			if string(msg.Payload) == `{"order_id":"bad"}` {
				return errBoom
			}
			handled = append(handled, msg.UUID)
			return nil
		}, pq.Middleware, retry.Middleware)
		dlq := collect(t, tr.Subscriber, "probe", topic+".dlq")

		bad := newEvent(t, reg, "bad")
		good1, good2 := newEvent(t, reg, "g1"), newEvent(t, reg, "g2")
		require.NoError(t, tr.Publisher().Publish(topic, bad, good1, good2))

		dl := dlq.wait(t, 1)[0]
		parsed := requireDeadLetter(t, bad, dl, topic, "billing.charge", middleware.ReasonRetriesExhausted, 3)
		require.Contains(t, parsed.Error, "boom")
		require.Equal(t, "orders.order_placed", parsed.Envelope.Name)
		require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(handled) == 2 }, 10*time.Second, 5*time.Millisecond)
		mu.Lock()
		require.Equal(t, []string{good1.UUID, good2.UUID}, handled)
		require.Equal(t, 3, calls[bad.UUID])
		mu.Unlock()
		require.Equal(t, int64(1), pq.DeadLettered())
		time.Sleep(50 * time.Millisecond)
		require.Len(t, dlq.all(), 1, "the dead-lettered message is acked, not redelivered")
	})

	t.Run("PanicAndCorruptPayloadWithReasons", func(t *testing.T) {
		t.Parallel()
		reg := newRegistry(t)
		tr := newMemory(t)
		pq := newPoison(t, tr.Publisher(), middleware.PoisonQueueConfig{})
		retry := fastRetry(t, middleware.RetryConfig{MaxAttempts: 2})
		r, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		require.NoError(t, err)
		r.AddMiddleware(middleware.Recover, pq.Middleware, retry.Middleware, middleware.Recover)
		proc, err := cqrs.NewProcessor(r, tr.Subscriber, cqrs.ProcessorConfig{DeadLetter: tr.Publisher(), Registry: reg})
		require.NoError(t, err)
		calls, inc := counter()
		require.NoError(t, proc.AddHandlers(cqrs.NewHandler("orders.explode", func(ctx context.Context, e *OrderPlaced) error {
			inc()
			panic("nil map in " + e.OrderID)
		})))
		startRouter(t, r)
		dlq := collect(t, tr.Subscriber, "probe", "orders.order_placed.dlq")

		boom := newEvent(t, reg, "o-1")
		corrupt := newEvent(t, reg, "o-2")
		corrupt.Payload = []byte(`{"order_id":`)
		require.NoError(t, tr.Publisher().Publish("orders.order_placed", boom, corrupt))

		got := dlq.wait(t, 2)
		p := requireDeadLetter(t, boom, got[0], "orders.order_placed", "orders.explode", middleware.ReasonPanic, 2)
		require.Contains(t, p.Error, "nil map in o-1")
		require.Contains(t, p.Stack, "panic")
		d := requireDeadLetter(t, corrupt, got[1], "orders.order_placed", "orders.explode", middleware.ReasonDecode, 1)
		require.Empty(t, d.Stack)
		require.Equal(t, 2, calls(), "the panic was retried, the corrupt payload never reached the handler")
	})

	t.Run("PermanentErrorIsNotRetried", func(t *testing.T) {
		t.Parallel()
		reg := newRegistry(t)
		tr := newMemory(t)
		topic := testenv.Name(t, "orders")
		pq := newPoison(t, tr.Publisher(), middleware.PoisonQueueConfig{Topic: func(topic string) string { return "parking." + topic }})
		retry := fastRetry(t, middleware.RetryConfig{MaxAttempts: 5})
		calls, inc := counter()
		sub, err := tr.Subscriber("g")
		require.NoError(t, err)
		runRouter(t, sub, "h", topic, func(msg *message.Message) error {
			inc()
			return middleware.Permanent(errors.New("order does not exist"))
		}, pq.Middleware, retry.Middleware)
		dlq := collect(t, tr.Subscriber, "probe", "parking."+topic)
		in := newEvent(t, reg, "o-1")
		require.NoError(t, tr.Publisher().Publish(topic, in))
		requireDeadLetter(t, in, dlq.wait(t, 1)[0], topic, "h", middleware.ReasonPermanent, 1)
		require.Equal(t, 1, calls())
	})

	t.Run("FailedDLQPublishNacksNeverDrops", func(t *testing.T) {
		t.Parallel()
		reg := newRegistry(t)
		tr := newMemory(t)
		topic := testenv.Name(t, "orders")
		flaky := &failingPublisher{Publisher: tr.Publisher(), fails: 2}
		pq := newPoison(t, flaky, middleware.PoisonQueueConfig{})
		calls, inc := counter()
		sub, err := tr.Subscriber("g")
		require.NoError(t, err)
		runRouter(t, sub, "h", topic, func(msg *message.Message) error {
			inc()
			return errBoom
		}, pq.Middleware)
		dlq := collect(t, tr.Subscriber, "probe", topic+".dlq")
		in := newEvent(t, reg, "o-1")
		require.NoError(t, tr.Publisher().Publish(topic, in))
		requireDeadLetter(t, in, dlq.wait(t, 1)[0], topic, "h", middleware.ReasonFailed, 1)
		require.Equal(t, 3, calls(), "nacked twice, redelivered, dead-lettered on the third delivery")
		require.Equal(t, int64(1), pq.DeadLettered())
	})

	t.Run("InterruptedIsNackedNotDeadLettered", func(t *testing.T) {
		t.Parallel()
		pub := &failingPublisher{fails: 1 << 30}
		pq := newPoison(t, pub, middleware.PoisonQueueConfig{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		msg := message.NewMessage("1", nil)
		msg.SetContext(ctx)
		_, err := pq.Middleware(func(*message.Message) ([]*message.Message, error) { return nil, errBoom })(msg)
		require.ErrorIs(t, err, errBoom)
		require.Zero(t, pub.calls, "nothing published on shutdown")
	})

	t.Run("OutsideARouterTheMessageIsNacked", func(t *testing.T) {
		t.Parallel()
		pub := &failingPublisher{fails: 1 << 30}
		pq := newPoison(t, pub, middleware.PoisonQueueConfig{})
		_, err := pq.Middleware(func(*message.Message) ([]*message.Message, error) { return nil, errBoom })(message.NewMessage("1", nil))
		require.ErrorIs(t, err, errBoom)
		require.ErrorIs(t, err, middleware.ErrNoTopic)
	})

	t.Run("InitialisesTheDeadLetterGroupOnce", func(t *testing.T) {
		t.Parallel()
		reg := newRegistry(t)
		tr := newMemory(t)
		topic := testenv.Name(t, "orders")
		inits := &initRecorder{}
		pq := newPoison(t, tr.Publisher(), middleware.PoisonQueueConfig{Subscribers: inits.factory(tr.Subscriber)})
		sub, err := tr.Subscriber("g")
		require.NoError(t, err)
		runRouter(t, sub, "h", topic, func(*message.Message) error { return errBoom }, pq.Middleware)
		dlq := collect(t, tr.Subscriber, "probe", topic+".dlq")
		require.NoError(t, tr.Publisher().Publish(topic, newEvent(t, reg, "1"), newEvent(t, reg, "2")))
		dlq.wait(t, 2)
		require.Equal(t, []string{middleware.DeadLetterGroupDefault + "/" + topic + ".dlq"}, inits.get())
	})
}

type initRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *initRecorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func (r *initRecorder) factory(next func(string) (message.Subscriber, error)) middleware.SubscriberFactory {
	return func(group string) (message.Subscriber, error) {
		sub, err := next(group)
		if err != nil {
			return nil, err
		}
		return initSub{Subscriber: sub, group: group, r: r}, nil
	}
}

type initSub struct {
	message.Subscriber
	group string
	r     *initRecorder
}

func (s initSub) SubscribeInitialize(topic string) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.seen = append(s.r.seen, s.group+"/"+topic)
	return nil
}

func TestReasonOf(t *testing.T) {
	t.Parallel()
	exhausted := func(err error) error { return &middleware.RetryError{Attempts: 3, Exhausted: true, Err: err} }
	for _, tc := range []struct {
		err  error
		want middleware.Reason
	}{
		{errBoom, middleware.ReasonFailed},
		{exhausted(errBoom), middleware.ReasonRetriesExhausted},
		{exhausted(context.DeadlineExceeded), middleware.ReasonTimeout},
		{exhausted(&middleware.PanicError{Value: "x"}), middleware.ReasonPanic},
		{&middleware.RetryError{Attempts: 1, Err: errBoom}, middleware.ReasonPermanent},
		{middleware.Permanent(errBoom), middleware.ReasonPermanent},
		{&events.DecodeError{Err: errBoom}, middleware.ReasonDecode},
		{fmt.Errorf("cqrs: %w", &events.DecodeError{Err: errBoom}), middleware.ReasonDecode},
		{fmt.Errorf("x: %w", events.ErrUnknownEvent), middleware.ReasonUnknownEvent},
		{fmt.Errorf("x: %w", events.ErrUnsupportedVersion), middleware.ReasonUnsupportedVersion},
	} {
		require.Equal(t, tc.want, middleware.ReasonOf(tc.err), "%v", tc.err)
	}
}
