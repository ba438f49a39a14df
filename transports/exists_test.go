package transports_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/b2131a45/eventkit/internal/dburl"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports"
	"github.com/b2131a45/eventkit/transports/amqp"
)

// TestExists asks every transport, on its real service, whether a topic
// exists before and after it was set up: a missing topic is reported
// missing and the question leaves nothing behind (no queue, exchange,
// Kafka topic or table), a topic set up for a group is found, on AMQP for
// that group only.
func TestExists(t *testing.T) {
	t.Parallel()
	for _, s := range services() {
		t.Run(string(s.kind), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			rawURL := s.url(t)
			tr, err := transports.Open(ctx, rawURL)
			if err != nil && (s.kind == transports.KindPostgres || s.kind == transports.KindMySQL) {
				testenv.Unavailable(t, string(s.kind), err)
			}
			require.NoError(t, err)
			t.Cleanup(func() { _ = tr.Close() })
			probe := newProber(t, s.kind, rawURL)
			topic := testenv.Name(t, "exists")
			const group, other = "g", "other"
			probe.cleanup(t, topic, group, other)

			for range 2 { // asking twice: the first question created nothing
				ok, err := tr.Exists(ctx, topic, group)
				require.NoError(t, err)
				require.False(t, ok, "a topic nobody set up")
			}
			probe.requireNothing(t, topic, group)

			// The mistyped form of a dead-letter topic: the live topic is set
			// up, its ".dlq" is not.
			setUp(t, tr, s.kind, topic, group)
			ok, err := tr.Exists(ctx, topic, group)
			require.NoError(t, err)
			require.True(t, ok, "set up for the group")
			ok, err = tr.Exists(ctx, topic, other)
			require.NoError(t, err)
			if s.kind == transports.KindAMQP {
				require.False(t, ok, "on AMQP a topic exists for a group when the group's queue does")
				probe.requireNoQueue(t, topic, other)
			} else {
				require.True(t, ok, "a log topic exists for every group")
			}
			ok, err = tr.Exists(ctx, topic+".dlq", group)
			require.NoError(t, err)
			require.False(t, ok)
			probe.requireNothing(t, topic+".dlq", group)
		})
	}
}

// TestExistsRefusesBadInput: names the transport would refuse, an empty
// group and a closed transport are errors, not answers, on every transport.
func TestExistsRefusesBadInput(t *testing.T) {
	t.Parallel()
	for _, s := range services() {
		t.Run(string(s.kind), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			tr := open(t, s)
			bad := [][2]string{
				{`orders"; DROP TABLE x; --`, "g"},
				{"orders topic", "g"},
				{"orders.dlq", "g h/../x"},
				{strings.Repeat("a", 250), "g"},
			}
			switch s.kind {
			case transports.KindKafka:
				bad = append(bad, [2]string{"orders:dlq", "g"})
			case transports.KindAMQP:
				bad = append(bad, [2]string{strings.Repeat("a", 249), strings.Repeat("g", 10)}) // queue > 255 bytes
			case transports.KindPostgres, transports.KindMySQL:
				bad = append(bad, [2]string{strings.Repeat("a", 60), "g"}) // its offsets table name > 63
			}
			for _, b := range bad {
				ok, err := tr.Exists(ctx, b[0], b[1])
				require.ErrorIs(t, err, transports.ErrInvalidName, "%q %q", b[0], b[1])
				require.False(t, ok)
			}
			_, err := tr.Exists(ctx, "orders.dlq", "")
			require.ErrorIs(t, err, transports.ErrNoGroup)
			require.NoError(t, tr.Close())
			_, err = tr.Exists(ctx, "orders.dlq", "g")
			require.ErrorIs(t, err, transports.ErrClosed)
		})
	}
}

// A passive declare of a missing queue closes its channel, not the
// connection: a subscription running on the transport's shared connection
// still receives what is published after many such questions.
func TestExistsKeepsTheAMQPConnection(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := services()[1]
	require.Equal(t, transports.KindAMQP, s.kind)
	rawURL := s.url(t)
	tr, err := transports.Open(ctx, rawURL)
	require.NoError(t, err)
	defer tr.Close()
	probe := newProber(t, s.kind, rawURL)
	topic := testenv.Name(t, "exists")
	probe.cleanup(t, topic, "g", "")

	sub, err := tr.Subscriber("g")
	require.NoError(t, err)
	msgs, err := sub.Subscribe(ctx, topic)
	require.NoError(t, err)
	for range 20 {
		ok, err := tr.Exists(ctx, topic+".dlq", "g")
		require.NoError(t, err)
		require.False(t, ok)
	}
	require.NoError(t, tr.Health(ctx))
	m := message.NewMessage(watermill.NewUUID(), []byte("after"))
	require.NoError(t, tr.Publisher().Publish(topic, m))
	select {
	case got := <-msgs:
		got.Ack()
		require.Equal(t, m.UUID, got.UUID)
	case <-ctx.Done():
		t.Fatal("the subscription stopped receiving after the passive declares")
	}
	probe.requireNothing(t, topic+".dlq", "g")
}

// setUp makes topic exist for group the way a consumer would: the group's
// subscription initialised (memory: a message published).
func setUp(t *testing.T, tr *transports.Transport, kind transports.Kind, topic, group string) {
	t.Helper()
	if kind == transports.KindMemory {
		require.NoError(t, tr.Publisher().Publish(topic, message.NewMessage(watermill.NewUUID(), []byte("x"))))
		return
	}
	sub, err := tr.Subscriber(group)
	require.NoError(t, err)
	defer sub.Close()
	require.NoError(t, sub.(message.SubscribeInitializer).SubscribeInitialize(topic))
}

// prober looks at the service directly, not through the transport, to see
// what exists, and removes what a test made.
type prober struct {
	kind  transports.Kind
	amqp  *amqp091.Connection
	db    *sql.DB
	kafka *kgo.Client
}

func newProber(t *testing.T, kind transports.Kind, rawURL string) *prober {
	t.Helper()
	p := &prober{kind: kind}
	var err error
	switch kind {
	case transports.KindAMQP:
		p.amqp, err = amqp091.Dial(rawURL)
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.amqp.Close() })
	case transports.KindPostgres, transports.KindMySQL:
		p.db, err = dburl.Open(rawURL)
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.db.Close() })
	case transports.KindKafka:
		hosts, _, _ := strings.Cut(strings.TrimPrefix(rawURL, "kafka://"), "?")
		p.kafka, err = kgo.NewClient(kgo.SeedBrokers(strings.Split(hosts, ",")...))
		require.NoError(t, err)
		t.Cleanup(p.kafka.Close)
	}
	return p
}

// passive reports whether a passive declare finds the queue or exchange.
func (p *prober) passive(t *testing.T, declare func(*amqp091.Channel) error) bool {
	t.Helper()
	ch, err := p.amqp.Channel()
	require.NoError(t, err)
	defer ch.Close()
	err = declare(ch)
	var ae *amqp091.Error
	if errors.As(err, &ae) && ae.Code == amqp091.NotFound {
		return false
	}
	require.NoError(t, err)
	return true
}

func (p *prober) requireNoQueue(t *testing.T, topic, group string) {
	t.Helper()
	require.False(t, p.passive(t, func(ch *amqp091.Channel) error {
		_, err := ch.QueueDeclarePassive(amqp.QueueName(topic, group), true, false, false, false, nil)
		return err
	}), "queue %s", amqp.QueueName(topic, group))
}

// requireNothing checks that neither topic nor anything of group on it
// exists on the service.
func (p *prober) requireNothing(t *testing.T, topic, group string) {
	t.Helper()
	ctx := context.Background()
	switch p.kind {
	case transports.KindAMQP:
		p.requireNoQueue(t, topic, group)
		require.False(t, p.passive(t, func(ch *amqp091.Channel) error {
			return ch.ExchangeDeclarePassive(topic, amqp091.ExchangeFanout, true, false, false, false, nil)
		}), "exchange %s", topic)
	case transports.KindPostgres, transports.KindMySQL:
		q := `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name IN ($1, $2)`
		if p.kind == transports.KindMySQL {
			q = `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name IN (?, ?)`
		}
		var n int
		require.NoError(t, p.db.QueryRowContext(ctx, q, "watermill_"+topic, "watermill_offsets_"+topic).Scan(&n))
		require.Zero(t, n, "tables of %s", topic)
	case transports.KindKafka:
		resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, p.kafka) // no topics: all of them
		require.NoError(t, err)
		for _, tp := range resp.Topics {
			require.NotEqual(t, topic, *tp.Topic, "Kafka topic created")
		}
	}
}

// cleanup removes, when t ends, what the groups made of topic and of its
// ".dlq" (the queues and exchanges, the tables); kfake clusters and memory
// transports go with the test.
func (p *prober) cleanup(t *testing.T, topic string, groups ...string) {
	t.Cleanup(func() {
		for _, tp := range []string{topic, topic + ".dlq"} {
			switch p.kind {
			case transports.KindAMQP:
				ch, err := p.amqp.Channel()
				if !assert.NoError(t, err) {
					return
				}
				for _, g := range groups {
					if g != "" {
						_, _ = ch.QueueDelete(amqp.QueueName(tp, g), false, false, false)
					}
				}
				_ = ch.ExchangeDelete(tp, false, false)
				_ = ch.Close()
			case transports.KindPostgres:
				for _, tbl := range []string{"watermill_" + tp, "watermill_offsets_" + tp} {
					_, err := p.db.Exec(`DROP TABLE IF EXISTS "` + tbl + `"`)
					assert.NoError(t, err)
				}
			case transports.KindMySQL:
				for _, tbl := range []string{"watermill_" + tp, "watermill_offsets_" + tp} {
					_, err := p.db.Exec("DROP TABLE IF EXISTS `" + tbl + "`")
					assert.NoError(t, err)
				}
			}
		}
	})
}
