package transports_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/b2131a45/eventkit/internal/kafkatest"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports"
	"github.com/b2131a45/eventkit/transports/transporttest"
)

func TestMain(m *testing.M) {
	// Sarama's metrics library starts one process-wide ticker goroutine the
	// first time a meter is made and never stops it.
	testenv.Main(m, goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"))
}

// The Subscriber method value is the subscriber constructor eventkit's
// cqrs package takes.
var _ func(group string) (message.Subscriber, error) = (*transports.Transport)(nil).Subscriber

type service struct {
	kind transports.Kind
	caps transports.Capabilities
	url  func(t *testing.T) string
}

var (
	ordered   = transports.Capabilities{OrderedPerKey: true, OrderedPerTopic: true, NewGroupsSeeHistory: true, Durable: true}
	inProcess = transports.Capabilities{OrderedPerKey: true, OrderedPerTopic: true, NewGroupsSeeHistory: true}
	rabbit    = transports.Capabilities{OrderedPerKey: true, OrderedPerTopic: true, Durable: true}
	kafkaCaps = transports.Capabilities{OrderedPerKey: true, NewGroupsSeeHistory: true, Durable: true}
)

// services returns a URL per kind, each reachable or its test stopped
// (a failure under CI).
func services() []service {
	return []service{
		{transports.KindMemory, inProcess, func(*testing.T) string { return "mem://" }},
		{transports.KindAMQP, rabbit, func(t *testing.T) string {
			conn, err := amqp091.Dial(testenv.AMQPURL())
			if err != nil {
				testenv.Unavailable(t, "RabbitMQ", err)
			}
			_ = conn.Close()
			return testenv.AMQPURL()
		}},
		{transports.KindKafka, kafkaCaps, func(t *testing.T) string {
			return "kafka://" + strings.Join(kafkatest.Cluster(t).ListenAddrs(), ",") +
				"?heartbeat_interval=100ms"
		}},
		// A delay table of the test's own: the default one is shared.
		{transports.KindPostgres, ordered, func(t *testing.T) string { return testenv.WithDelayTable(t, testenv.PostgresURL()) }},
		{transports.KindMySQL, ordered, func(t *testing.T) string { return testenv.WithDelayTable(t, testenv.MySQLURL()) }},
	}
}

func open(t *testing.T, s service) *transports.Transport {
	t.Helper()
	tr, err := transports.Open(context.Background(), s.url(t))
	if err != nil && (s.kind == transports.KindPostgres || s.kind == transports.KindMySQL) {
		testenv.Unavailable(t, string(s.kind), err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func TestOpen(t *testing.T) {
	t.Parallel()
	for _, s := range services() {
		t.Run(string(s.kind), func(t *testing.T) {
			t.Parallel()
			tr := open(t, s)
			require.Equal(t, s.kind, tr.Kind())
			require.Equal(t, s.caps, tr.Capabilities())
			require.NotContains(t, tr.String(), "guest:guest")

			topic := testenv.Name(t, "open")
			sub, err := tr.Subscriber("g")
			require.NoError(t, err)
			require.NoError(t, sub.(message.SubscribeInitializer).SubscribeInitialize(topic))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			msgs, err := sub.Subscribe(ctx, topic)
			require.NoError(t, err)

			sent := message.NewMessage(watermill.NewUUID(), []byte(`{"id":1}`))
			sent.Metadata.Set("name", "orders.order_created")
			require.NoError(t, tr.Publisher().Publish(topic, sent))
			select {
			case got := <-msgs:
				got.Ack()
				require.Equal(t, sent.UUID, got.UUID)
				require.Equal(t, "orders.order_created", got.Metadata.Get("name"))
			case <-time.After(30 * time.Second):
				t.Fatal("no message within 30s")
			}

			// The publisher belongs to the transport: closing it, as a
			// Watermill router does, changes nothing.
			require.NoError(t, tr.Publisher().Close())
			require.NoError(t, tr.Publisher().Publish(topic, message.NewMessage(watermill.NewUUID(), nil)))

			_, err = tr.Subscriber("")
			require.ErrorIs(t, err, transports.ErrNoGroup)
			require.NoError(t, tr.Close())
			require.NoError(t, tr.Close())
			require.ErrorIs(t, tr.Publisher().Publish(topic, sent), transports.ErrClosed)
			_, err = tr.Subscriber("g")
			require.ErrorIs(t, err, transports.ErrClosed)
		})
	}
}

// TestConformanceThroughOpen runs the suite on the transports as Open
// returns them, for the wrapping; each subpackage runs it on its own.
func TestConformanceThroughOpen(t *testing.T) {
	t.Parallel()
	transporttest.Run(t, func(t *testing.T) transporttest.Transport {
		tr, err := transports.Open(context.Background(), "mem://?resend_interval=10ms")
		require.NoError(t, err)
		return tr
	}, transporttest.Features{OrderedPerKey: true, OrderedPerTopic: true, NewGroupsSeeHistory: true})
}

func TestOpenRejectsBadURLs(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"":                                 "no scheme",
		"localhost:5672":                   "no scheme",
		"://host":                          "no scheme",
		"redis://u:hunter2@host":           `unknown scheme "redis"`,
		"amqp://u:hunter2@/":               "missing host",
		"amqps://u:hunter2@host/?bogus=1":  `unknown option "bogus"`,
		"amqp://u:hunter2@host:nope/":      "malformed URL",
		"kafka://":                         "missing broker host",
		"kafka://u:hunter2@k1":             `broker "k1" is not host:port`,
		"postgres://u:hunter2@/db":         "missing host",
		"postgresql://u:hunter2@h/db?x=1":  `unknown option "x"`,
		"mysql://u:hunter2@h":              "missing database name",
		"mysql://u:hunter2@h/db?tls=maybe": `invalid value "maybe" for option "tls"`,
		"mem://host":                       "mem:// takes no host",
		"mem://?resend_interval=0s":        `invalid value "0s" for option "resend_interval"`,
	} {
		_, err := transports.Open(context.Background(), raw)
		require.ErrorContains(t, err, want, raw)
		require.NotContains(t, err.Error(), "hunter2", raw)
		var ue *transports.URLError
		require.ErrorAs(t, err, &ue, raw)
	}
	_, err := transports.Open(context.Background(), "nats://h")
	require.ErrorIs(t, err, transports.ErrUnknownScheme)
}

// TestOpenNeverShowsPasswords opens unreachable brokers with a password and
// checks the errors and slog.Default. It is not parallel: it swaps the
// default logger.
func TestOpenNeverShowsPasswords(t *testing.T) {
	const secret = "s3cret-Pa55word"
	var logs bytes.Buffer
	previous := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer slog.SetDefault(previous)

	pw := url.QueryEscape(secret)
	for _, raw := range []string{
		"amqp://guest:" + pw + "@127.0.0.1:1/?dial_timeout=2s",
		"kafka://u:" + pw + "@127.0.0.1:1?dial_timeout=1s",
		"postgres://u:" + pw + "@127.0.0.1:1/db?connect_timeout=2",
		"mysql://u:" + pw + "@127.0.0.1:1/db?timeout=2s",
	} {
		tr, err := transports.Open(context.Background(), raw)
		if err == nil {
			_ = tr.Close()
			t.Fatalf("%s: opened an unreachable broker", raw)
		}
		require.NotContains(t, err.Error(), secret)
		require.Contains(t, err.Error(), "xxxxx", "the error should show the masked URL")
		var ue *transports.URLError
		require.False(t, errors.As(err, &ue), "a connection failure is not a URL error: %v", err)
	}
	require.NotContains(t, logs.String(), secret)
}
