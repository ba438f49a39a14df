package sql_test

import (
	"context"
	stdsql "database/sql"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports/internal/testutil"
	"github.com/b2131a45/eventkit/transports/sql"
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

type database struct {
	name string
	url  string
}

func databases() []database {
	return []database{
		{"postgres", testenv.PostgresURL()},
		{"mysql", testenv.MySQLURL()},
	}
}

// withQuery adds query parameters to a URL.
func withQuery(t *testing.T, raw, extra string) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	q := u.Query()
	more, err := url.ParseQuery(extra)
	require.NoError(t, err)
	for k, v := range more {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// source returns the database's source with test timings and a delay
// table of the test's own, or stops the test when the database is
// unreachable (a failure under CI).
func source(t *testing.T, db database) sql.Source {
	t.Helper()
	src, err := sql.ParseURL(withQuery(t, testenv.WithDelayTable(t, db.url), "poll_interval=10ms&resend_interval=10ms&ack_deadline=3s&max_open_conns=8"))
	require.NoError(t, err)
	tr, err := src.Open(context.Background())
	if err != nil {
		testenv.Unavailable(t, db.name, err)
	}
	require.NoError(t, tr.Close())
	return src
}

func openTransport(t *testing.T, src sql.Source) *sql.Transport {
	t.Helper()
	tr, err := src.Open(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func TestConformance(t *testing.T) {
	t.Parallel()
	for _, db := range databases() {
		t.Run(db.name, func(t *testing.T) {
			t.Parallel()
			src := source(t, db)
			transporttest.Run(t, func(t *testing.T) transporttest.Transport {
				return openTransport(t, src)
			}, transporttest.Features{
				OrderedPerKey:       true,
				OrderedPerTopic:     true,
				NewGroupsSeeHistory: true,
			})
		})
	}
}

func TestUniversal(t *testing.T) {
	t.Parallel()
	for _, db := range databases() {
		t.Run(db.name, func(t *testing.T) {
			t.Parallel()
			src := source(t, db)
			// One pool for the whole suite, capped: the suite runs dozens
			// of subscriptions at once and the databases allow 100 to 150
			// connections for every test package.
			src.MaxOpenConns = 24
			pool, err := src.OpenDB()
			require.NoError(t, err)
			t.Cleanup(func() { _ = pool.Close() })
			withGroup := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
				pub, err := sql.NewPublisher(pool, src.Config)
				require.NoError(t, err)
				sub, err := sql.NewSubscriber(pool, src.Config, group)
				require.NoError(t, err)
				// The suite does not close every subscriber it makes
				// (TestPublishSubscribeInOrder closes its own too early).
				t.Cleanup(func() { _ = pub.Close(); _ = sub.Close() })
				return pub, sub
			}
			tests.TestPubSub(t, tests.Features{
				ConsumerGroups:  true,
				GuaranteedOrder: true,
				Persistent:      true,
				// At-least-once: a batch interrupted by a closing
				// subscriber is read again.
				ExactlyOnceDelivery: false,
				// 50 subscribers of one group serialize on its offsets row.
				ForceShort: true,
				// Recorded for testenv.Main to drop their tables.
				GenerateTopicFunc: func(tctx tests.TestContext) string {
					return testenv.Track("u_" + strings.ReplaceAll(string(tctx.TestID), "-", ""))
				},
			}, func(t *testing.T) (message.Publisher, message.Subscriber) {
				return withGroup(t, "test")
			}, withGroup)
		})
	}
}

func TestInteroperatesWithWatermillSQL(t *testing.T) {
	t.Parallel()
	for _, db := range databases() {
		t.Run(db.name, func(t *testing.T) {
			t.Parallel()
			src := source(t, db)
			tr := openTransport(t, src)
			pool, err := src.OpenDB()
			require.NoError(t, err)
			t.Cleanup(func() { _ = pool.Close() })
			var (
				schema  wmsql.SchemaAdapter
				offsets wmsql.OffsetsAdapter
			)
			if src.Config.Dialect == sql.Postgres {
				schema, offsets = wmsql.DefaultPostgreSQLSchema{}, wmsql.DefaultPostgreSQLOffsetsAdapter{}
			} else {
				schema, offsets = wmsql.DefaultMySQLSchema{}, wmsql.DefaultMySQLOffsetsAdapter{}
			}

			topic := testenv.Name(t, "interop")
			sent := message.NewMessage(watermill.NewUUID(), []byte(`{"a":1}`))
			sent.Metadata.Set("name", "orders.order_created")
			require.NoError(t, tr.Publisher().Publish(topic, sent))

			wmSub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(pool), wmsql.SubscriberConfig{
				ConsumerGroup: "watermill", SchemaAdapter: schema, OffsetsAdapter: offsets,
				InitializeSchema: true, PollInterval: 10 * time.Millisecond,
			}, nil)
			require.NoError(t, err)
			t.Cleanup(func() { _ = wmSub.Close() })
			got := testutil.Receive(t, testutil.Subscribe(t, wmSub, topic))
			require.Equal(t, sent.UUID, got.UUID)
			require.Equal(t, sent.Payload, got.Payload)
			require.Equal(t, "orders.order_created", got.Metadata.Get("name"))

			wmPub, err := wmsql.NewPublisher(wmsql.BeginnerFromStdSQL(pool), wmsql.PublisherConfig{SchemaAdapter: schema}, nil)
			require.NoError(t, err)
			back := message.NewMessage(watermill.NewUUID(), []byte(`{"b":2}`))
			back.Metadata.Set("event_version", "3")
			require.NoError(t, wmPub.Publish(topic, back))
			sub, err := tr.Subscriber("ours")
			require.NoError(t, err)
			msgs := testutil.Subscribe(t, sub, topic)
			require.Equal(t, sent.UUID, testutil.Receive(t, msgs).UUID)
			got = testutil.Receive(t, msgs)
			require.Equal(t, back.UUID, got.UUID)
			require.Equal(t, "3", got.Metadata.Get("event_version"))
		})
	}
}

func TestTopicNames(t *testing.T) {
	t.Parallel()
	for _, db := range databases() {
		t.Run(db.name, func(t *testing.T) {
			t.Parallel()
			tr := openTransport(t, source(t, db))
			msg := message.NewMessage(watermill.NewUUID(), nil)
			require.ErrorContains(t, tr.Publisher().Publish(strings.Repeat("t", 46), msg), "longer than 45 characters")
			require.ErrorIs(t, tr.Publisher().Publish("bad name;", msg), wmsql.ErrInvalidTopicName)
			sub, err := tr.Subscriber("g")
			require.NoError(t, err)
			_, err = sub.Subscribe(context.Background(), "")
			require.ErrorContains(t, err, "topic name is empty")
		})
	}
}

func TestPasswordStaysSecret(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-Pa55word"
	for _, db := range databases() {
		t.Run(db.name, func(t *testing.T) {
			t.Parallel()
			source(t, db) // skips when the database is down
			u, err := url.Parse(db.url)
			require.NoError(t, err)
			var logs testutil.LogBuffer
			for _, host := range []string{u.Host, "127.0.0.1:1"} {
				bad := *u
				bad.Host = host
				bad.User = url.UserPassword(u.User.Username()+"_nobody", secret)
				timeout := "connect_timeout=2"
				if db.name == "mysql" {
					timeout = "timeout=2s"
				}
				src, err := sql.ParseURL(withQuery(t, bad.String(), timeout))
				require.NoError(t, err)
				src.Config.Logger = slog.New(slog.NewTextHandler(&logs, nil))
				_, err = src.Open(context.Background())
				require.Error(t, err)
				require.NotContains(t, err.Error(), secret)
			}
			require.NotContains(t, logs.String(), secret)
		})
	}
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	src, err := sql.ParseURL("postgres://u:p@db:5433/events?sslmode=require&application_name=orders&poll_interval=50ms&resend_interval=1s&ack_deadline=10s&batch_size=10&max_open_conns=4")
	require.NoError(t, err)
	require.Equal(t, sql.Config{
		Dialect:        sql.Postgres,
		PollInterval:   50 * time.Millisecond,
		ResendInterval: time.Second,
		AckDeadline:    10 * time.Second,
		BatchSize:      10,
	}, src.Config)
	require.Equal(t, 4, src.MaxOpenConns)

	src, err = sql.ParseURL("mysql://u:p@db/events?tls=skip-verify&timeout=3s&read_timeout=1s&write_timeout=1s")
	require.NoError(t, err)
	require.Equal(t, sql.MySQL, src.Config.Dialect)
	src, err = sql.ParseURL("postgresql://db/events")
	require.NoError(t, err)
	require.Equal(t, sql.Postgres, src.Config.Dialect)

	for raw, want := range map[string]string{
		"postgres://u:hunter2@/db":                      "missing host",
		"mysql://u:hunter2@/db":                         "missing host",
		"mysql://u:hunter2@db":                          "missing database name",
		"mysql://u:hunter2@db/":                         "missing database name",
		"sqlite://u:hunter2@db/x":                       `scheme "sqlite" is not postgres, postgresql or mysql`,
		"postgres://u:hunter2@db/x?poll_interval=soon":  `invalid value "soon" for option "poll_interval"`,
		"postgres://u:hunter2@db/x?sslmod=disable":      `unknown option "sslmod"`,
		"mysql://u:hunter2@db/x?sslmode=disable":        `unknown option "sslmode"`,
		"mysql://u:hunter2@db/x?tls=maybe":              `invalid value "maybe" for option "tls"`,
		"postgres://u:hunter2@db:port/x":                "malformed URL",
		"postgres://u:hunter2@db/x?sslmode=sometimes":   "sslmode",
		"postgres://u:hunter2@db/x?batch_size=0":        `invalid value "0" for option "batch_size"`,
		"postgres://u:hunter2@db/x?connect_timeout=abc": "connect_timeout",
	} {
		_, err := sql.ParseURL(raw)
		require.ErrorContains(t, err, want, raw)
		require.NotContains(t, err.Error(), "hunter2", raw)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	db := &stdsql.DB{}
	for field, cfg := range map[string]sql.Config{
		"Config.Dialect":      {},
		"Config.PollInterval": {Dialect: sql.Postgres, PollInterval: -1},
		"Config.BatchSize":    {Dialect: sql.MySQL, BatchSize: -1},
	} {
		_, err := sql.New(db, cfg)
		require.ErrorContains(t, err, field)
	}
	_, err := sql.NewSubscriber(db, sql.Config{Dialect: sql.MySQL}, "")
	require.ErrorIs(t, err, sql.ErrNoGroup)
	_, err = sql.NewPublisher(nil, sql.Config{Dialect: sql.MySQL})
	require.ErrorContains(t, err, "db is nil")
}
