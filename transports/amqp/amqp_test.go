package amqp_test

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/b2131a45/eventkit/internal/faultproxy"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports/amqp"
	"github.com/b2131a45/eventkit/transports/internal/testutil"
	"github.com/b2131a45/eventkit/transports/transporttest"
)

func TestMain(m *testing.M) {
	testenv.Main(m,
		// Watermill's universal suite fans several subscribers into one channel
		// (internal/subscriber.multiplier) with goroutines that block forever
		// once the test stops reading; an at-least-once redelivery after the
		// test has its messages leaves one behind. They belong to the suite.
		goleak.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill/internal/subscriber.(*multiplier).Subscribe.func2"),
		goleak.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill/internal/subscriber.(*multiplier).Subscribe.func3"),
	)
}

// queueTTL makes the queues of the tests expire once unused, so that runs
// do not pile them up in the shared broker.
var queueTTL = amqp091.Table{"x-expires": int32(120_000)}

// config returns a config for the test broker, or stops the test when the
// broker is unreachable (a failure under CI).
func config(t *testing.T) amqp.Config {
	t.Helper()
	cfg := amqp.Config{
		URL:               testenv.AMQPURL(),
		ReconnectInterval: 100 * time.Millisecond,
		QueueArgs:         queueTTL,
	}
	conn, err := amqp091.Dial(cfg.URL)
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ", err)
	}
	_ = conn.Close()
	return cfg
}

func newTransport(t *testing.T, cfg amqp.Config) *amqp.Transport {
	t.Helper()
	tr, err := amqp.New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func TestConformance(t *testing.T) {
	t.Parallel()
	cfg := config(t)
	transporttest.Run(t, func(t *testing.T) transporttest.Transport {
		return newTransport(t, cfg)
	}, transporttest.Features{
		OrderedPerKey:       true,
		OrderedPerTopic:     true,
		NewGroupsSeeHistory: false,
	})
}

func TestUniversal(t *testing.T) {
	t.Parallel()
	cfg := config(t)
	// The suite publishes one message per call from up to 50 goroutines.
	cfg.PublishChannels = 50
	withGroup := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pub, err := amqp.NewPublisher(context.Background(), cfg)
		require.NoError(t, err)
		sub, err := amqp.NewSubscriber(context.Background(), cfg, group)
		require.NoError(t, err)
		// The suite does not close every subscriber it makes
		// (TestPublishSubscribeInOrder closes its own too early).
		t.Cleanup(func() { _ = pub.Close(); _ = sub.Close() })
		return pub, sub
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:                      true,
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		// The suite's own topic names, recorded for testenv.Main to remove
		// their exchanges and queues.
		GenerateTopicFunc: func(tctx tests.TestContext) string {
			return testenv.Track("topic-" + string(tctx.TestID))
		},
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		return withGroup(t, "test")
	}, withGroup)
}

func TestInteroperatesWithWatermillAMQP(t *testing.T) {
	t.Parallel()
	cfg := config(t)
	tr := newTransport(t, cfg)
	wmConfig := func(group string) wmamqp.Config {
		c := wmamqp.NewDurablePubSubConfig(cfg.URL, wmamqp.GenerateQueueNameTopicNameWithSuffix(group))
		c.Queue.Arguments = queueTTL
		return c
	}

	t.Run("watermill subscriber reads our messages", func(t *testing.T) {
		t.Parallel()
		topic := testenv.Name(t, "interop")
		wmSub, err := wmamqp.NewSubscriber(wmConfig("g"), watermill.NopLogger{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = wmSub.Close() })
		require.NoError(t, wmSub.SubscribeInitialize(topic))

		sent := message.NewMessage(watermill.NewUUID(), []byte(`{"a":1}`))
		sent.Metadata.Set("name", "orders.order_created")
		sent.Metadata.Set("partition_key", "order-1")
		require.NoError(t, tr.Publisher().Publish(topic, sent))

		got := testutil.Receive(t, testutil.Subscribe(t, wmSub, topic))
		require.Equal(t, sent.UUID, got.UUID)
		require.Equal(t, sent.Payload, got.Payload)
		require.Equal(t, "orders.order_created", got.Metadata.Get("name"))
		require.Equal(t, "order-1", got.Metadata.Get("partition_key"))
	})

	t.Run("our subscriber reads watermill's messages", func(t *testing.T) {
		t.Parallel()
		topic := testenv.Name(t, "interop")
		sub, err := tr.Subscriber("g")
		require.NoError(t, err)
		t.Cleanup(func() { _ = sub.Close() })
		msgs := testutil.Subscribe(t, sub, topic)

		wmPub, err := wmamqp.NewPublisher(wmConfig(""), watermill.NopLogger{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = wmPub.Close() })
		sent := message.NewMessage(watermill.NewUUID(), []byte("payload"))
		sent.Metadata.Set("event_version", "3")
		require.NoError(t, wmPub.Publish(topic, sent))

		got := testutil.Receive(t, msgs)
		require.Equal(t, sent.UUID, got.UUID)
		require.Equal(t, sent.Payload, got.Payload)
		require.Equal(t, "3", got.Metadata.Get("event_version"))
	})
}

func TestUnroutableMessages(t *testing.T) {
	t.Parallel()
	cfg := config(t)

	t.Run("are an error by default", func(t *testing.T) {
		t.Parallel()
		tr := newTransport(t, cfg)
		topic := testenv.Name(t, "nobody")
		msgs := []*message.Message{
			message.NewMessage(watermill.NewUUID(), []byte("1")),
			message.NewMessage(watermill.NewUUID(), []byte("2")),
		}
		err := tr.Publisher().Publish(topic, msgs...)
		require.ErrorIs(t, err, amqp.ErrUnroutable)
		var pe *amqp.PublishError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, []string{msgs[0].UUID, msgs[1].UUID}, pe.UUIDs)
		require.Equal(t, pe.UUIDs, testutil.NotConfirmed(err))
		require.True(t, testutil.Permanent(err), "an unroutable message is refused")
		require.False(t, testutil.Unavailable(err))

		// Once a group exists the same topic is routable.
		sub, err := tr.Subscriber("g")
		require.NoError(t, err)
		defer sub.Close()
		require.NoError(t, sub.(message.SubscribeInitializer).SubscribeInitialize(topic))
		require.NoError(t, tr.Publisher().Publish(topic, msgs...))
	})

	t.Run("are dropped when asked", func(t *testing.T) {
		t.Parallel()
		drop := cfg
		drop.Unroutable = amqp.UnroutableDrop
		tr := newTransport(t, drop)
		require.NoError(t, tr.Publisher().Publish(testenv.Name(t, "nobody"),
			message.NewMessage(watermill.NewUUID(), []byte("lost"))))
	})
}

// rawChannel opens a plain amqp091 channel for setting up the broker.
func rawChannel(t *testing.T, rawURL string) *amqp091.Channel {
	t.Helper()
	conn, err := amqp091.Dial(rawURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	return ch
}

func TestNackedPublishIsAnError(t *testing.T) {
	t.Parallel()
	cfg := config(t)
	topic := testenv.Name(t, "full")
	queue := amqp.QueueName(topic, "small")

	ch := rawChannel(t, cfg.URL)
	require.NoError(t, ch.ExchangeDeclare(topic, "fanout", true, false, false, false, nil))
	_, err := ch.QueueDeclare(queue, true, false, false, false, amqp091.Table{
		"x-max-length": int32(1),
		"x-overflow":   "reject-publish",
		"x-expires":    int32(120_000),
	})
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(queue, "", topic, false, nil))
	t.Cleanup(func() {
		_, _ = ch.QueueDelete(queue, false, false, false)
		_ = ch.ExchangeDelete(topic, false, false)
	})

	tr := newTransport(t, cfg)
	msgs := []*message.Message{
		message.NewMessage(watermill.NewUUID(), []byte("fits")),
		message.NewMessage(watermill.NewUUID(), []byte("rejected")),
		message.NewMessage(watermill.NewUUID(), []byte("rejected too")),
	}
	err = tr.Publisher().Publish(topic, msgs...)
	require.ErrorIs(t, err, amqp.ErrNacked)
	var pe *amqp.PublishError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, []string{msgs[1].UUID, msgs[2].UUID}, pe.UUIDs)
	require.NotErrorIs(t, err, amqp.ErrUnroutable)
	require.True(t, testutil.Unavailable(err), "a nack is back-pressure")

	// The publisher goes on working after a nack.
	_, err = ch.QueuePurge(queue, false)
	require.NoError(t, err)
	require.NoError(t, tr.Publisher().Publish(topic, msgs[1]))
}

func TestReconnects(t *testing.T) {
	t.Parallel()
	cfg := config(t)
	broker, err := url.Parse(cfg.URL)
	require.NoError(t, err)
	proxy, err := faultproxy.New(broker.Host)
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	viaProxy := *broker
	viaProxy.Host = proxy.Addr()
	proxied := cfg
	proxied.URL = viaProxy.String()
	proxied.ReconnectInterval = 50 * time.Millisecond

	var logs testutil.LogBuffer
	proxied.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	tr := newTransport(t, proxied)
	topic := testenv.Name(t, "reconnect")
	sub, err := tr.Subscriber("g")
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	msgs := testutil.Subscribe(t, sub, topic)

	before := message.NewMessage(watermill.NewUUID(), []byte("before"))
	require.NoError(t, tr.Publisher().Publish(topic, before))
	require.Equal(t, before.UUID, testutil.Receive(t, msgs).UUID)

	proxy.Break()
	during := message.NewMessage(watermill.NewUUID(), []byte("during"))
	err = tr.Publisher().Publish(topic, during)
	require.Error(t, err, "a publish while the broker is unreachable must fail")
	require.True(t, testutil.Unavailable(err), "an outage must read as unavailable: %v", err)
	require.Equal(t, []string{during.UUID}, testutil.NotConfirmed(err))

	proxy.Restore()
	after := message.NewMessage(watermill.NewUUID(), []byte("after"))
	require.Eventually(t, func() bool {
		return tr.Publisher().Publish(topic, after) == nil
	}, 15*time.Second, 20*time.Millisecond, "the publisher did not reconnect")

	// The same subscription goes on once its connection is back.
	for {
		if m := testutil.Receive(t, msgs); m.UUID == after.UUID {
			break
		}
	}
	require.Contains(t, logs.String(), "amqp connection lost")
	require.Contains(t, logs.String(), "amqp subscription restored")
}

func TestPasswordStaysSecret(t *testing.T) {
	t.Parallel()
	cfg := config(t)
	u, err := url.Parse(cfg.URL)
	require.NoError(t, err)
	const secret = "s3cret-Pa55word"
	user := u.User.Username()

	var logs testutil.LogBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	for _, host := range []string{u.Host, "127.0.0.1:1"} {
		bad := *u
		bad.Host = host
		bad.User = url.UserPassword(user, secret)
		_, err := amqp.New(context.Background(), amqp.Config{URL: bad.String(), Logger: logger, DialTimeout: 2 * time.Second})
		require.Error(t, err)
		require.NotContains(t, err.Error(), secret)
	}
	// A failed first dial is reported once, by the error New returns: it is
	// not logged too.
	require.Empty(t, logs.String())
	require.NotContains(t, logs.String(), secret)
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	cfg, err := amqp.ParseURL("amqps://u:p@rabbit:5671/vhost?prefetch=10&concurrency=4&confirm_timeout=5s&publish_channels=2&dial_timeout=1s&reconnect_interval=2s&unroutable=drop&heartbeat=5")
	require.NoError(t, err)
	require.Equal(t, amqp.Config{
		URL:               "amqps://u:p@rabbit:5671/vhost?heartbeat=5",
		Prefetch:          10,
		Concurrency:       4,
		ConfirmTimeout:    5 * time.Second,
		PublishChannels:   2,
		DialTimeout:       time.Second,
		ReconnectInterval: 2 * time.Second,
		Unroutable:        amqp.UnroutableDrop,
	}, cfg)

	for raw, want := range map[string]string{
		"amqp://u:hunter2@/":                              "missing host",
		"http://u:hunter2@host/":                          `scheme "http" is not amqp or amqps`,
		"amqp://u:hunter2@host/?prefetch=-1":              `invalid value "-1" for option "prefetch"`,
		"amqp://u:hunter2@host/?prefech=1":                `unknown option "prefech"`,
		"amqp://u:hunter2@host/?unroutable=":              `invalid value "" for option "unroutable"`,
		"amqp://u:hunter2@host:port/":                     "malformed URL",
		"amqp://u:hunter2@host/?heartbeat=x":              "heartbeat",
		"amqp://u:hunter2@host/?prefetch=2&concurrency=3": "Config.Concurrency 3 is more than Config.Prefetch 2",
	} {
		_, err := amqp.ParseURL(raw)
		require.ErrorContains(t, err, want, raw)
		require.NotContains(t, err.Error(), "hunter2", raw)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for field, cfg := range map[string]amqp.Config{
		"Config.URL":                {},
		"Config.DialTimeout":        {URL: "amqp://h/", DialTimeout: -1},
		"Config.PublishChannels":    {URL: "amqp://h/", PublishChannels: -1},
		"Config.Prefetch":           {URL: "amqp://h/", Prefetch: -1},
		"Config.Concurrency":        {URL: "amqp://h/", Concurrency: -1},
		"more than Config.Prefetch": {URL: "amqp://h/", Concurrency: 8, Prefetch: 4},
		"Config.Unroutable":         {URL: "amqp://h/", Unroutable: 7},
	} {
		_, err := amqp.New(context.Background(), cfg)
		require.ErrorContains(t, err, field)
	}
	_, err := amqp.NewSubscriber(context.Background(), amqp.Config{URL: "amqp://h/"}, "")
	require.ErrorIs(t, err, amqp.ErrNoGroup)
}

func TestPublishAfterCloseFails(t *testing.T) {
	t.Parallel()
	pub, err := amqp.NewPublisher(context.Background(), config(t))
	require.NoError(t, err)
	require.NoError(t, pub.Close())
	require.NoError(t, pub.Close())
	err = pub.Publish("t", message.NewMessage(watermill.NewUUID(), nil))
	require.True(t, errors.Is(err, amqp.ErrClosed), "got %v", err)
	require.False(t, strings.Contains(err.Error(), "guest:guest"))
}
