package forwarder_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	wmforwarder "github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/events"
)

// The outbox table is a watermill-sql default-schema table and its rows are
// Watermill forwarder envelopes: a stock Watermill forwarder drains it and
// publishes exactly what the relay publishes; rows written by a stock
// forwarder publisher are drained by the relay.
func TestStockWatermillForwarderCompatibility(t *testing.T) {
	t.Parallel()
	for _, b := range []backend{pgStd, mysqlB} {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b)
			ctx := context.Background()
			var schema wmsql.SchemaAdapter = wmsql.DefaultPostgreSQLSchema{}
			var offsets wmsql.OffsetsAdapter = wmsql.DefaultPostgreSQLOffsetsAdapter{}
			if b == mysqlB {
				schema, offsets = wmsql.DefaultMySQLSchema{}, wmsql.DefaultMySQLOffsetsAdapter{}
			}
			logger := watermill.NopLogger{}

			e.add(orders(0, 3)...)
			e.add(OrderShipped{ID: "s-1"})

			// A stock publisher, as in Watermill's outbox example, writes in
			// a transaction too.
			tx, err := e.db.BeginTx(ctx, nil)
			require.NoError(t, err)
			sqlPub, err := wmsql.NewPublisher(wmsql.TxFromStdSQL(tx), wmsql.PublisherConfig{SchemaAdapter: schema}, logger)
			require.NoError(t, err)
			stockMsg, err := e.reg.NewMessage(ctx, OrderCreated{ID: "stock", Seq: 3}, "stock")
			require.NoError(t, err)
			require.NoError(t, wmforwarder.NewPublisher(sqlPub, wmforwarder.PublisherConfig{ForwarderTopic: e.name}).
				Publish("test.order_created", stockMsg))
			require.NoError(t, tx.Commit())

			// The stock forwarder drains the table...
			stock := &memBroker{}
			sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(e.db), wmsql.SubscriberConfig{
				ConsumerGroup:    "stock",
				SchemaAdapter:    schema,
				OffsetsAdapter:   offsets,
				InitializeSchema: true,
				PollInterval:     10 * time.Millisecond,
			}, logger)
			require.NoError(t, err)
			fwd, err := wmforwarder.NewForwarder(sub, stock, logger, wmforwarder.Config{ForwarderTopic: e.name})
			require.NoError(t, err)
			fctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- fwd.Run(fctx) }()
			stock.waitCount(t, 5, 20*time.Second)
			cancel()
			require.NoError(t, fwd.Close())
			<-done
			require.NoError(t, sub.Close())

			// ...and so does the relay, with the same result.
			relayed := &memBroker{}
			e.start(relayed, fastRelay())
			relayed.waitCount(t, 5, 10*time.Second)

			// Same messages; the relay keeps order per topic (it publishes a
			// batch topic by topic), the stock forwarder row by row.
			a, b := stock.messages(), relayed.messages()
			require.Len(t, a, 5)
			require.Len(t, b, 5)
			byID := map[string]published{}
			for _, p := range a {
				byID[p.msg.UUID] = p
			}
			for _, p := range b {
				s, ok := byID[p.msg.UUID]
				require.True(t, ok, "relay published %s, stock forwarder did not", p.msg.UUID)
				require.Equal(t, s.topic, p.topic)
				require.Equal(t, string(s.msg.Payload), string(p.msg.Payload))
				require.Equal(t, s.msg.Metadata, p.msg.Metadata)
				env, v, err := e.reg.Decode(p.msg)
				require.NoError(t, err)
				require.Equal(t, p.msg.UUID, env.ID)
				require.NotNil(t, v)
			}
			require.Equal(t, inTopic(a, "test.order_created"), inTopic(b, "test.order_created"))
			require.Equal(t, []int{0, 1, 2, 3}, relayed.seqs(t))
			require.Equal(t, "stock", b[3].msg.Metadata.Get(events.KeySource))
		})
	}
}

// inTopic returns the UUIDs published to topic, in order.
func inTopic(ps []published, topic string) []string {
	var out []string
	for _, p := range ps {
		if p.topic == topic {
			out = append(out, p.msg.UUID)
		}
	}
	return out
}

var _ message.Publisher = (*memBroker)(nil)
