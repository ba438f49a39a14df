package kafka_test

import (
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/b2131a45/eventkit/internal/kafkatest"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports/internal/testutil"
	"github.com/b2131a45/eventkit/transports/kafka"
	"github.com/b2131a45/eventkit/transports/transporttest"
)

func TestMain(m *testing.M) {
	testenv.Main(m,
		// Sarama's metrics library starts one process-wide ticker
		// goroutine the first time a meter is made and never stops it.
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
		// Watermill's universal suite fans several subscribers into one channel
		// (internal/subscriber.multiplier) with goroutines that block forever
		// once the test stops reading; an at-least-once redelivery after the
		// test has its messages leaves one behind. They belong to the suite.
		goleak.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill/internal/subscriber.(*multiplier).Subscribe.func2"),
		goleak.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill/internal/subscriber.(*multiplier).Subscribe.func3"),
	)
}

// config returns a config for a fresh in-process cluster, with group
// timings fit for tests.
func config(t *testing.T, opts ...kfake.Opt) (kafka.Config, *kfake.Cluster) {
	t.Helper()
	c := kafkatest.Cluster(t, opts...)
	return kafka.Config{
		Brokers: c.ListenAddrs(),
		// Members learn of a rebalance from a heartbeat: beat often. The
		// session timeout only matters for members that vanish without
		// leaving, which the tests' do not; under -race on two cores a
		// short one expels busy members and makes groups rebalance.
		HeartbeatInterval:  100 * time.Millisecond,
		NackResendInterval: 10 * time.Millisecond,
	}, c
}

func newTransport(t *testing.T, cfg kafka.Config) *kafka.Transport {
	t.Helper()
	tr, err := kafka.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func TestConformance(t *testing.T) {
	t.Parallel()
	cfg, _ := config(t)
	transporttest.Run(t, func(t *testing.T) transporttest.Transport {
		return newTransport(t, cfg)
	}, transporttest.Features{
		OrderedPerKey:       true,
		OrderedPerTopic:     false,
		NewGroupsSeeHistory: true,
	})
}

func universal(t *testing.T, cfg kafka.Config, features tests.Features) {
	withGroup := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pub, err := kafka.NewPublisher(cfg)
		require.NoError(t, err)
		sub, err := kafka.NewSubscriber(cfg, group)
		require.NoError(t, err)
		// The suite does not close every subscriber it makes
		// (TestPublishSubscribeInOrder closes its own too early).
		t.Cleanup(func() { _ = pub.Close(); _ = sub.Close() })
		return pub, sub
	}
	tests.TestPubSub(t, features, func(t *testing.T) (message.Publisher, message.Subscriber) {
		// A group per test: Watermill's own tests share "test", which in
		// Kafka makes every parallel test a member of one group that
		// rebalances each time any of them joins or leaves.
		return withGroup(t, strings.ReplaceAll(t.Name(), "/", "_"))
	}, withGroup)
}

func TestUniversal(t *testing.T) {
	t.Parallel()
	cfg, _ := config(t)
	universal(t, cfg, tests.Features{
		ConsumerGroups: true,
		Persistent:     true,
		// Keyless messages spread over the partitions: no order.
		GuaranteedOrder: false,
	})
}

// TestUniversalSinglePartition runs the suite's order checks on topics of
// one partition, where Kafka orders every message.
func TestUniversalSinglePartition(t *testing.T) {
	t.Parallel()
	cfg, _ := config(t, kfake.DefaultNumPartitions(1))
	universal(t, cfg, tests.Features{
		ConsumerGroups:                      true,
		Persistent:                          true,
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		// TestUniversal runs the full message counts already.
		ForceShort: true,
	})
}

// TestSubscriptionsOfOneGroupDoNotStallEachOther: a subscriber of one group
// subscribes to two topics and reads them one after the other (Watermill's
// TestTopic). Each Subscribe is a member of the group, and the second one
// joining rebalances the group. The member of the topic not read yet holds a
// message nobody takes; it must still leave its session, or no member of the
// group gets partitions again (watermill-kafka's subscriber stalled here
// until the coordinator expelled it at the rebalance timeout, 60s; on kfake,
// which restarts that wait whenever a member rejoins, for good).
func TestSubscriptionsOfOneGroupDoNotStallEachOther(t *testing.T) {
	t.Parallel()
	cfg, _ := config(t)
	tr := newTransport(t, cfg)
	first, second := testenv.Name(t, "first"), testenv.Name(t, "second")
	firstMsg := message.NewMessage(watermill.NewUUID(), []byte("1"))
	secondMsg := message.NewMessage(watermill.NewUUID(), []byte("2"))
	require.NoError(t, tr.Publisher().Publish(first, firstMsg))
	require.NoError(t, tr.Publisher().Publish(second, secondMsg))

	sub, err := tr.Subscriber("g")
	require.NoError(t, err)
	// Join with the second topic alone and let its member fetch the
	// message it cannot hand over (should that take longer, the test
	// passes without exercising the stall).
	secondMsgs := testutil.Subscribe(t, sub, second)
	time.Sleep(time.Second)

	start := time.Now()
	firstMsgs := testutil.Subscribe(t, sub, first)
	select {
	case m := <-firstMsgs:
		m.Ack()
		require.Equal(t, firstMsg.UUID, m.UUID)
		t.Logf("first topic's message after %s", time.Since(start))
	case <-time.After(15 * time.Second): // Watermill's TestTopic's wait
		t.Fatal("the group stalled: no message on the first topic within 15s")
	}
	// The message the second member dropped comes again.
	require.Equal(t, secondMsg.UUID, testutil.Receive(t, secondMsgs).UUID)
}

func TestPartitionKeyIsMessageKey(t *testing.T) {
	t.Parallel()
	cfg, _ := config(t)
	tr := newTransport(t, cfg)
	topic := testenv.Name(t, "keys")
	keyed := message.NewMessage(watermill.NewUUID(), []byte("k"))
	keyed.Metadata.Set("partition_key", "order-42")
	keyless := message.NewMessage(watermill.NewUUID(), []byte("n"))
	require.NoError(t, tr.Publisher().Publish(topic, keyed, keyless))

	sub, err := tr.Subscriber("g")
	require.NoError(t, err)
	msgs := testutil.Subscribe(t, sub, topic)
	keys := map[string][]byte{}
	for range 2 {
		m := testutil.Receive(t, msgs)
		key, ok := kafka.MessageKeyFromCtx(m.Context())
		require.True(t, ok)
		keys[m.UUID] = key
	}
	require.Equal(t, []byte("order-42"), keys[keyed.UUID])
	require.Empty(t, keys[keyless.UUID])
}

// TestProducer checks on the wire that Publish sends a batch, not a
// request per message, with acks=all and idempotence.
func TestProducer(t *testing.T) {
	t.Parallel()
	cfg, cluster := config(t)
	var requests, records atomic.Int64
	var acks atomic.Int32
	var producerID atomic.Int64
	producerID.Store(-1)
	cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		produce := req.(*kmsg.ProduceRequest)
		requests.Add(1)
		acks.Store(int32(produce.Acks))
		for _, topic := range produce.Topics {
			for _, p := range topic.Partitions {
				var batch kmsg.RecordBatch
				if err := batch.ReadFrom(p.Records); err == nil {
					records.Add(int64(batch.NumRecords))
					producerID.Store(batch.ProducerID)
				}
			}
		}
		return nil, nil, false
	})

	tr := newTransport(t, cfg)
	msgs := make([]*message.Message, 500)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), []byte("x"))
		msgs[i].Metadata.Set("partition_key", "same-key")
	}
	require.NoError(t, tr.Publisher().Publish(testenv.Name(t, "batch"), msgs...))

	require.EqualValues(t, 500, records.Load())
	require.Less(t, requests.Load(), int64(50), "one produce request per message or close to it: not batched")
	require.EqualValues(t, -1, acks.Load(), "acks=all")
	require.GreaterOrEqual(t, producerID.Load(), int64(0), "the producer is not idempotent")
}

func TestPublishErrorsListMessagesAndTellRetryFromRefusal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code        int16
		sarama      error
		cause       error
		unavailable bool
	}{
		{kerr.MessageTooLarge.Code, sarama.ErrMessageSizeTooLarge, kafka.ErrRejected, false},
		{kerr.NotEnoughReplicas.Code, sarama.ErrNotEnoughReplicas, kafka.ErrUnavailable, true},
	} {
		t.Run(tc.sarama.Error(), func(t *testing.T) {
			t.Parallel()
			cfg, cluster := config(t)
			tr := newTransport(t, cfg)
			cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
				cluster.KeepControl()
				produce := req.(*kmsg.ProduceRequest)
				resp := produce.ResponseKind().(*kmsg.ProduceResponse)
				for _, rt := range produce.Topics {
					st := kmsg.NewProduceResponseTopic()
					st.Topic = rt.Topic
					for _, rp := range rt.Partitions {
						sp := kmsg.NewProduceResponseTopicPartition()
						sp.Partition = rp.Partition
						sp.ErrorCode = tc.code
						st.Partitions = append(st.Partitions, sp)
					}
					resp.Topics = append(resp.Topics, st)
				}
				return resp, nil, true
			})
			msgs := []*message.Message{
				message.NewMessage(watermill.NewUUID(), []byte("a")),
				message.NewMessage(watermill.NewUUID(), []byte("b")),
			}
			err := tr.Publisher().Publish(testenv.Name(t, "refused"), msgs...)
			var pe *kafka.PublishError
			require.ErrorAs(t, err, &pe)
			require.ElementsMatch(t, []string{msgs[0].UUID, msgs[1].UUID}, pe.UUIDs)
			require.ElementsMatch(t, pe.UUIDs, testutil.NotConfirmed(err))
			require.ErrorIs(t, err, tc.sarama)
			require.ErrorIs(t, err, tc.cause)
			require.Equal(t, tc.unavailable, testutil.Unavailable(err))
			require.Equal(t, !tc.unavailable, testutil.Permanent(err))
		})
	}
}

func TestInteroperatesWithWatermillKafka(t *testing.T) {
	t.Parallel()
	cfg, _ := config(t)
	tr := newTransport(t, cfg)
	saramaConfig := func() *sarama.Config {
		sc := wmkafka.DefaultSaramaSyncPublisherConfig()
		sc.Version = sarama.V2_8_0_0
		sc.Consumer.Offsets.Initial = sarama.OffsetOldest
		return sc
	}

	t.Run("watermill subscriber reads our messages", func(t *testing.T) {
		t.Parallel()
		topic := testenv.Name(t, "interop")
		sent := message.NewMessage(watermill.NewUUID(), []byte(`{"a":1}`))
		sent.Metadata.Set("name", "orders.order_created")
		sent.Metadata.Set("partition_key", "order-1")
		require.NoError(t, tr.Publisher().Publish(topic, sent))

		wmSub, err := wmkafka.NewSubscriber(wmkafka.SubscriberConfig{
			Brokers:               cfg.Brokers,
			Unmarshaler:           wmkafka.DefaultMarshaler{},
			OverwriteSaramaConfig: saramaConfig(),
			ConsumerGroup:         "g",
		}, watermill.NopLogger{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = wmSub.Close() })
		got := testutil.Receive(t, testutil.Subscribe(t, wmSub, topic))
		require.Equal(t, sent.UUID, got.UUID)
		require.Equal(t, sent.Payload, got.Payload)
		require.Equal(t, sent.Metadata, got.Metadata)
	})

	t.Run("our subscriber reads watermill's messages", func(t *testing.T) {
		t.Parallel()
		topic := testenv.Name(t, "interop")
		wmPub, err := wmkafka.NewPublisher(wmkafka.PublisherConfig{
			Brokers:               cfg.Brokers,
			Marshaler:             wmkafka.DefaultMarshaler{},
			OverwriteSaramaConfig: saramaConfig(),
		}, watermill.NopLogger{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = wmPub.Close() })
		sent := message.NewMessage(watermill.NewUUID(), []byte("payload"))
		sent.Metadata.Set("event_version", "3")
		require.NoError(t, wmPub.Publish(topic, sent))

		sub, err := tr.Subscriber("g")
		require.NoError(t, err)
		got := testutil.Receive(t, testutil.Subscribe(t, sub, topic))
		require.Equal(t, sent.UUID, got.UUID)
		require.Equal(t, sent.Payload, got.Payload)
		require.Equal(t, "3", got.Metadata.Get("event_version"))
	})
}

func TestSASL(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-Pa55word"
	cfg, _ := config(t, kfake.EnableSASL(), kfake.Superuser("PLAIN", "admin", secret))

	var logs testutil.LogBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	cfg.User, cfg.Password = "admin", secret
	authenticates(t, cfg, secret, secret+"-wrong", &logs)
}

// authenticates checks that cfg's credentials carry an event there and
// back, and that the wrong password fails without secret in the error or in
// logs (cfg.Logger's buffer).
func authenticates(t *testing.T, cfg kafka.Config, secret, wrongPassword string, logs *testutil.LogBuffer) {
	t.Helper()
	tr := newTransport(t, cfg)
	topic := testenv.Name(t, "auth")
	sent := message.NewMessage(watermill.NewUUID(), []byte("x"))
	require.NoError(t, tr.Publisher().Publish(topic, sent))
	sub, err := tr.Subscriber("g")
	require.NoError(t, err)
	require.Equal(t, sent.UUID, testutil.Receive(t, testutil.Subscribe(t, sub, topic)).UUID)

	wrong := cfg
	wrong.Password = wrongPassword
	wrong.DialTimeout = 2 * time.Second
	_, err = kafka.New(wrong)
	require.Error(t, err)
	require.NotContains(t, err.Error(), secret)
	require.NotContains(t, logs.String(), secret)
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	cfg, err := kafka.ParseURL("kafka://alice:p%40ss@k1:9092,k2:9093/?version=3.6.0&client_id=orders&tls=true&dial_timeout=3s&partitions=12&replication_factor=3&session_timeout=20s&heartbeat_interval=2s&nack_resend_interval=1s")
	require.NoError(t, err)
	require.Equal(t, []string{"k1:9092", "k2:9093"}, cfg.Brokers)
	require.Equal(t, sarama.V3_6_0_0, cfg.Version)
	require.Equal(t, "orders", cfg.ClientID)
	require.NotNil(t, cfg.TLS)
	require.Equal(t, "alice", cfg.User)
	require.Equal(t, "p@ss", cfg.Password)
	require.Equal(t, 3*time.Second, cfg.DialTimeout)
	require.EqualValues(t, 12, cfg.Partitions)
	require.EqualValues(t, 3, cfg.ReplicationFactor)
	require.Equal(t, 20*time.Second, cfg.SessionTimeout)
	require.Equal(t, 2*time.Second, cfg.HeartbeatInterval)
	require.Equal(t, time.Second, cfg.NackResendInterval)

	for raw, want := range map[string]string{
		"kafka://":                                         "missing broker host",
		"kafka://u:hunter2@":                               "missing broker host",
		"kafka://u:hunter2@k1":                             `broker "k1" is not host:port`,
		"kafka://u:hunter2@k1:x":                           `broker "k1:x" has an invalid port`,
		"kafka://u:hunter2@k1:9092,":                       `broker "" is not host:port`,
		"kafka://u:hunter2@k1:9092/topic":                  "no path",
		"kafka://u:hunter2@k1:9092?verion=1":               `unknown option "verion"`,
		"kafka://u:hunter2@k1:9092?version=x":              `invalid value "x" for option "version"`,
		"kafka://u:hunter2@k1:9092?version=0.10.2.0":       "older than 0.11.0.0",
		"kafka://u:hunter2@k1:9092?heartbeat_interval=20s": "Heartbeat.Interval",
		"kafka://:hunter2@k1:9092":                         "SASL needs both a user and a password",
		"http://u:hunter2@k1:9092":                         `scheme "http" is not kafka`,
	} {
		_, err := kafka.ParseURL(raw)
		require.ErrorContains(t, err, want, raw)
		require.NotContains(t, err.Error(), "hunter2", raw)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for field, cfg := range map[string]kafka.Config{
		"Config.Brokers":        {},
		"empty address":         {Brokers: []string{""}},
		"Config.User":           {Brokers: []string{"k:1"}, User: "u"},
		"Config.SessionTimeout": {Brokers: []string{"k:1"}, SessionTimeout: -1},
		"Config.Partitions":     {Brokers: []string{"k:1"}, Partitions: -2},
	} {
		_, err := kafka.New(cfg)
		require.ErrorContains(t, err, field)
	}
	_, err := kafka.NewSubscriber(kafka.Config{Brokers: []string{"k:1"}}, "")
	require.ErrorIs(t, err, kafka.ErrNoGroup)
}

func TestUnreachableBroker(t *testing.T) {
	t.Parallel()
	_, err := kafka.New(kafka.Config{Brokers: []string{"127.0.0.1:1"}, DialTimeout: time.Second})
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "127.0.0.1:1"), err.Error())
}
