package middleware_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
)

// broker is a real transport for the end-to-end tests.
type broker struct {
	pub  message.Publisher
	subs middleware.SubscriberFactory
	// idle is the ReplayConfig.IdleTimeout that covers the group join.
	idle time.Duration
}

// amqpBroker connects to RabbitMQ with durable fanout exchanges (one per
// topic) and a queue per topic and consumer group, and deletes what it
// declared at cleanup.
func amqpBroker(t *testing.T) *broker {
	t.Helper()
	url := testenv.AMQPURL()
	conn, err := amqp091.Dial(url)
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ", err)
	}
	var mu sync.Mutex
	declared := map[[2]string]bool{} // topic, group
	cfg := func(group string) wmamqp.Config {
		c := wmamqp.NewDurablePubSubConfig(url, wmamqp.GenerateQueueNameTopicNameWithSuffix(group))
		c.Publish.ConfirmDelivery = true
		return c
	}
	pub, err := wmamqp.NewPublisher(cfg(""), watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = pub.Close()
		mu.Lock()
		defer mu.Unlock()
		for k := range declared {
			if ch, err := conn.Channel(); err == nil {
				_, _ = ch.QueueDelete(wmamqp.GenerateQueueNameTopicNameWithSuffix(k[1])(k[0]), false, false, false)
				_ = ch.Close()
			}
			if ch, err := conn.Channel(); err == nil {
				_ = ch.ExchangeDelete(k[0], false, false)
				_ = ch.Close()
			}
		}
		_ = conn.Close()
	})
	return &broker{
		pub:  pub,
		idle: time.Second,
		subs: func(group string) (message.Subscriber, error) {
			sub, err := wmamqp.NewSubscriber(cfg(group), watermill.NopLogger{})
			if err != nil {
				return nil, err
			}
			return &trackedSub{Subscriber: sub, track: func(topic string) {
				mu.Lock()
				declared[[2]string{topic, group}] = true
				mu.Unlock()
			}}, nil
		},
	}
}

type trackedSub struct {
	*wmamqp.Subscriber
	track func(topic string)
}

func (s *trackedSub) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.track(topic)
	return s.Subscriber.Subscribe(ctx, topic)
}

func (s *trackedSub) SubscribeInitialize(topic string) error {
	s.track(topic)
	return s.Subscriber.SubscribeInitialize(topic)
}

// kafkaBroker runs an in-process Kafka (kfake) with two partitions per topic.
func kafkaBroker(t *testing.T) *broker {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(2))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	addrs := cluster.ListenAddrs()
	pubCfg := kafka.DefaultSaramaSyncPublisherConfig()
	pubCfg.Version = sarama.V2_1_0_0
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{Brokers: addrs, Marshaler: kafka.DefaultMarshaler{}, OverwriteSaramaConfig: pubCfg}, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pub.Close() })
	return &broker{
		pub:  pub,
		idle: 3 * time.Second,
		subs: func(group string) (message.Subscriber, error) {
			c := kafka.DefaultSaramaSubscriberConfig()
			c.Version = sarama.V2_1_0_0
			c.Consumer.Offsets.Initial = sarama.OffsetOldest
			c.Consumer.Group.Heartbeat.Interval = 200 * time.Millisecond
			return kafka.NewSubscriber(kafka.SubscriberConfig{
				Brokers:               addrs,
				Unmarshaler:           kafka.DefaultMarshaler{},
				ConsumerGroup:         group,
				OverwriteSaramaConfig: c,
				NackResendSleep:       10 * time.Millisecond,
				// PoisonQueue initialises dead-letter topics; on Kafka that
				// creates the topic.
				InitializeTopicDetails: &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1},
				ReconnectRetrySleep:    100 * time.Millisecond,
			}, watermill.NopLogger{})
		},
	}
}

// Events of the end-to-end scenarios.
type (
	Counted struct {
		ID        string `json:"id"`
		FailFirst bool   `json:"fail_first,omitempty"`
	}
	Flaky  struct{ ID string }
	Doomed struct {
		ID   string
		Fail bool
	}
	Boom struct{ ID string }
)

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(*testing.T) *broker{"amqp": amqpBroker, "kafka": kafkaBroker} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			runEndToEnd(t, open(t))
		})
	}
}

// runEndToEnd runs the scenarios of issue #4 over one broker with the
// Default chain, a PostgreSQL inbox in InTx mode and typed handlers.
func runEndToEnd(t *testing.T, b *broker) {
	ctx := context.Background()
	pg := sqlBackends[0]
	inbox, db := newSQLInbox(t, pg, middleware.InboxConfig{})
	counts := createTable(t, db, "CREATE TABLE %s (id TEXT PRIMARY KEY, n INTEGER NOT NULL)")

	reg := newRegistry(t)
	require.NoError(t, events.Register[Counted](reg, "e2e.counted"))
	require.NoError(t, events.Register[Flaky](reg, "e2e.flaky"))
	require.NoError(t, events.Register[Doomed](reg, "e2e.doomed"))
	require.NoError(t, events.Register[Boom](reg, "e2e.boom"))
	prefix := testenv.Name(t, "e2e")
	topic := func(eventName string) string { return prefix + "." + eventName }
	bus, err := cqrs.NewBus(b.pub, cqrs.BusConfig{Registry: reg, Topic: topic, Source: "e2e"})
	require.NoError(t, err)

	chain, err := middleware.Default(middleware.DefaultConfig{
		Publisher:   b.pub,
		Inbox:       inbox,
		InTx:        true,
		Subscribers: b.subs,
		Retry:       middleware.RetryConfig{MaxAttempts: 3, InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond},
		// Stock watermill-amqp and watermill-kafka publishers cannot delay.
		DelayedRetry: middleware.DelayedRetryConfig{Disabled: true},
		Timeout:      20 * time.Second,
		Logger:       discard,
	})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	router.AddMiddleware(chain.Middlewares()...)
	proc, err := cqrs.NewProcessor(router, cqrs.SubscriberFactory(b.subs), cqrs.ProcessorConfig{DeadLetter: b.pub, Registry: reg, Topic: topic})
	require.NoError(t, err)

	var mu sync.Mutex
	flakyRuns := map[string]int{}
	doomedSeen := map[string]int{}
	hops := map[string]events.Envelope{}
	var doomedFails atomic.Bool
	doomedFails.Store(true)
	require.NoError(t, proc.AddHandlers(
		cqrs.NewHandler("e2e.count", func(ctx context.Context, e *Counted) error {
			tx, ok := middleware.TxFromContext(ctx)
			if !ok {
				return fmt.Errorf("no inbox transaction")
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO "+counts+" (id, n) VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET n = "+counts+".n + 1", e.ID); err != nil {
				return err
			}
			if e.FailFirst && middleware.AttemptFromContext(ctx) == 1 {
				return errBoom // after the write: it must roll back
			}
			return nil
		}),
		cqrs.NewHandler("e2e.flaky", func(ctx context.Context, e *Flaky) error {
			mu.Lock()
			defer mu.Unlock()
			flakyRuns[e.ID]++
			if flakyRuns[e.ID] < 3 {
				return errBoom
			}
			return nil
		}),
		cqrs.NewHandler("e2e.doomed", func(ctx context.Context, e *Doomed) error {
			if e.Fail && doomedFails.Load() {
				return errBoom
			}
			env, _ := events.EnvelopeFromContext(ctx)
			mu.Lock()
			doomedSeen[env.ID]++
			mu.Unlock()
			return nil
		}),
		cqrs.NewHandler("e2e.boom", func(ctx context.Context, e *Boom) error {
			var p *Boom
			_ = p.ID // nil pointer dereference
			return nil
		}),
		cqrs.NewHandler("e2e.hop.a", func(ctx context.Context, e *OrderPlaced) error {
			env, _ := events.EnvelopeFromContext(ctx)
			mu.Lock()
			hops["a"] = env
			mu.Unlock()
			return bus.Publish(ctx, StockReserved{OrderID: e.OrderID})
		}),
		cqrs.NewHandler("e2e.hop.b", func(ctx context.Context, e *StockReserved) error {
			env, _ := events.EnvelopeFromContext(ctx)
			mu.Lock()
			hops["b"] = env
			mu.Unlock()
			return bus.Publish(ctx, ShipmentPlanned{OrderID: e.OrderID})
		}),
		cqrs.NewHandler("e2e.hop.c", func(ctx context.Context, e *ShipmentPlanned) error {
			env, _ := events.EnvelopeFromContext(ctx)
			mu.Lock()
			hops["c"] = env
			mu.Unlock()
			return nil
		}),
	))
	startRouter(t, router)

	const wait = 60 * time.Second
	tick := 10 * time.Millisecond
	countOf := func(id string) int {
		var n int
		err := db.QueryRowContext(ctx, "SELECT n FROM "+counts+" WHERE id = $1", id).Scan(&n)
		if err == sql.ErrNoRows {
			return 0
		}
		require.NoError(t, err)
		return n
	}
	inboxRows := func(handler, id string) int {
		var n int
		require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+inbox.Table()+" WHERE handler = $1 AND event_id = $2", handler, id).Scan(&n))
		return n
	}

	// Publish everything first: the scenarios run side by side.
	msgs, _, err := bus.Messages(ctx, Counted{ID: "c-1"}, Counted{ID: "c-2", FailFirst: true})
	require.NoError(t, err)
	c1, c2 := msgs[0], msgs[1]
	for range 3 {
		require.NoError(t, b.pub.Publish(topic("e2e.counted"), c1.Copy()))
	}
	require.NoError(t, b.pub.Publish(topic("e2e.counted"), c2))
	msgs, _, err = bus.Messages(ctx, Flaky{ID: "f-1"})
	require.NoError(t, err)
	flaky := msgs[0]
	require.NoError(t, b.pub.Publish(topic("e2e.flaky"), flaky))
	msgs, _, err = bus.Messages(ctx, Doomed{ID: "d-1", Fail: true}, Doomed{ID: "d-2"}, Doomed{ID: "d-3"})
	require.NoError(t, err)
	doomed, ok1, ok2 := msgs[0], msgs[1], msgs[2]
	require.NoError(t, b.pub.Publish(topic("e2e.doomed"), doomed, ok1, ok2))
	msgs, _, err = bus.Messages(ctx, Boom{ID: "b-1"}, Boom{ID: "b-2"})
	require.NoError(t, err)
	boom, corrupt := msgs[0], msgs[1]
	corrupt.Payload = []byte(`{"ID": 12`)
	require.NoError(t, b.pub.Publish(topic("e2e.boom"), boom, corrupt))
	require.NoError(t, bus.Publish(events.WithCorrelationID(ctx, "req-e2e"), OrderPlaced{OrderID: "o-1"}))

	t.Run("SameEventThreeTimesChangesStateOnce", func(t *testing.T) {
		require.Eventually(t, func() bool { return countOf("c-1") == 1 && chain.Duplicates() >= 2 }, wait, tick)
		require.Equal(t, 1, countOf("c-1"))
		require.Equal(t, 1, inboxRows("e2e.count", c1.UUID))
	})

	t.Run("InTxRollsBackAFailedAttempt", func(t *testing.T) {
		require.Eventually(t, func() bool { return inboxRows("e2e.count", c2.UUID) == 1 }, wait, tick)
		require.Equal(t, 1, countOf("c-2"), "the first attempt's write rolled back with its inbox row")
	})

	t.Run("FailTwiceThenSucceedRunsThreeTimesRecordedOnce", func(t *testing.T) {
		require.Eventually(t, func() bool { return inboxRows("e2e.flaky", flaky.UUID) == 1 }, wait, tick)
		mu.Lock()
		require.Equal(t, 3, flakyRuns["f-1"])
		mu.Unlock()
	})

	t.Run("AlwaysFailingGoesToDLQOthersFlowReplayRedelivers", func(t *testing.T) {
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return doomedSeen[ok1.UUID] == 1 && doomedSeen[ok2.UUID] == 1
		}, wait, tick, "the events behind the failing one keep flowing")
		dlqTopic := topic("e2e.doomed") + ".dlq"
		var listed []middleware.DeadLetter
		require.Eventually(t, func() bool {
			listed, err = middleware.ListDLQ(ctx, b.subs, b.pub, middleware.ReplayConfig{Topic: dlqTopic, IdleTimeout: b.idle, Logger: discard})
			require.NoError(t, err)
			return len(listed) > 0
		}, wait, tick)
		require.Equal(t, doomed.UUID, listed[0].EventID)
		requireDeadLetter(t, doomed, listed[0].Message, topic("e2e.doomed"), "e2e.doomed", middleware.ReasonRetriesExhausted, 3)

		doomedFails.Store(false) // the bug is fixed: replay
		var replayed int
		require.Eventually(t, func() bool {
			res, err := middleware.ReplayDLQ(ctx, b.subs, b.pub, middleware.ReplayConfig{
				Topic: dlqTopic, Handler: "e2e.doomed", Reason: middleware.ReasonRetriesExhausted, IdleTimeout: b.idle, Logger: discard,
			})
			require.NoError(t, err)
			replayed += res.Replayed
			return replayed > 0
		}, wait, tick)
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return doomedSeen[doomed.UUID] == 1
		}, wait, tick, "the replayed event arrives with its original event id")
	})

	t.Run("PanicAndCorruptPayloadGoToDLQWithReasons", func(t *testing.T) {
		dlqTopic := topic("e2e.boom") + ".dlq"
		byID := map[string]middleware.DeadLetter{}
		require.Eventually(t, func() bool {
			listed, err := middleware.ListDLQ(ctx, b.subs, b.pub, middleware.ReplayConfig{Topic: dlqTopic, IdleTimeout: b.idle, Logger: discard})
			require.NoError(t, err)
			for _, dl := range listed {
				byID[dl.EventID] = dl
			}
			return len(byID) == 2
		}, wait, tick)
		p := requireDeadLetter(t, boom, byID[boom.UUID].Message, topic("e2e.boom"), "e2e.boom", middleware.ReasonPanic, 3)
		require.Contains(t, p.Error, "nil pointer dereference")
		require.NotEmpty(t, p.Stack)
		requireDeadLetter(t, corrupt, byID[corrupt.UUID].Message, topic("e2e.boom"), "e2e.boom", middleware.ReasonDecode, 1)
	})

	t.Run("CorrelationAcrossThreeHops", func(t *testing.T) {
		require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(hops) == 3 }, wait, tick)
		mu.Lock()
		defer mu.Unlock()
		for _, h := range []string{"a", "b", "c"} {
			require.Equal(t, "req-e2e", hops[h].CorrelationID, h)
		}
		require.Equal(t, hops["a"].ID, hops["b"].CausationID)
		require.Equal(t, hops["b"].ID, hops["c"].CausationID)
	})
}
