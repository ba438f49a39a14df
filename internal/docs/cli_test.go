package docs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	wmforwarder "github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

// runCLI: README.md's "Operating it: the CLI", every line run as written
// with bash in the repository root, DATABASE_URL at a PostgreSQL schema of
// the test's own and TRANSPORT_URL at a RabbitMQ vhost of its own. Before
// the lines that need them, the test makes what a service would have made:
// rows in the outbox (a failed one, whose id replaces EVENT_ID…, a
// published one from more than 168h ago, a pending one, a scheduled one),
// the progress of a stock Watermill forwarder that drained the first rows,
// and a dead letter of orders.order_created made by the Default chain. Each
// line must exit 0 and print the real counts.
func runCLI(t *testing.T, b block) {
	warm(t)
	db, dbURL := postgresSchema(t)
	amqpURL := testenv.AMQPVhost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const outbox, topic, dlq = "orders_outbox", "orders.order_created", "orders.order_created.dlq"
	reg := events.NewRegistry()
	events.MustRegister[OrderCreated](reg, topic, events.Version(2), events.Upcast(1, orderCreatedV1toV2))
	var ob *forwarder.Outbox
	ids := map[string]string{} // order → event id
	var due time.Time
	var dead *message.Message
	add := func(evts ...any) { // in one transaction
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, ob.Add(ctx, tx, evts...))
		require.NoError(t, tx.Commit())
	}
	stats := func() forwarder.Stats {
		s, err := ob.Stats(ctx)
		require.NoError(t, err)
		return s
	}
	// table is the rows of a tabular output, split in columns.
	table := func(out string) [][]string {
		var rows [][]string
		for l := range strings.Lines(out) {
			rows = append(rows, regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(l), -1))
		}
		return rows
	}

	steps := []step{
		{line: regexp.MustCompile(`^go run \./cmd/eventkit migrate --db "\$DATABASE_URL" --outbox orders_outbox --inbox orders_inbox$`),
			check: func(t *testing.T, out string) {
				assert.Equal(t, "outbox orders_outbox: created 2 table(s): watermill_orders_outbox, watermill_orders_outbox_scheduled\n"+
					"inbox orders_inbox: created 1 table(s): orders_inbox\n", out)
				var err error
				ob, err = forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Name: outbox, Source: "orders"})
				require.NoError(t, err)
			}},
		{line: regexp.MustCompile(`^go run \./cmd/eventkit outbox stats --db "\$DATABASE_URL" --outbox orders_outbox$`),
			before: func(t *testing.T) {
				// o-1 and o-2 committed; a stock Watermill forwarder drains
				// them (its progress is for outbox adopt), then the relay
				// parks o-1 (the broker refuses it) and publishes o-2, more
				// than 168h ago (for outbox purge); o-3 waits, o-4 is due
				// tomorrow.
				add(OrderCreated{OrderID: "o-1"}, OrderCreated{OrderID: "o-2"})
				stockForwarderDrains(t, ctx, db, outbox)
				relayOnce(t, ctx, ob, `{"order_id":"o-1"}`, func(s forwarder.Stats) bool { return s.Failed == 1 && s.Published == 1 })
				_, err := db.ExecContext(ctx, `UPDATE watermill_orders_outbox SET published_at = now() - interval '8 days' WHERE status = 1`)
				require.NoError(t, err)
				add(OrderCreated{OrderID: "o-3"})
				due = time.Now().Add(24 * time.Hour)
				add(OrderCreated{OrderID: "o-4"}, forwarder.DeliverAt(due))
				for order, list := range map[string]func(*forwarder.Outbox, context.Context, int) ([]forwarder.Record, error){
					"o-1": (*forwarder.Outbox).Failed, "o-3": (*forwarder.Outbox).Pending, "o-4": (*forwarder.Outbox).Scheduled,
				} {
					recs, err := list(ob, ctx, 10)
					require.NoError(t, err)
					require.Len(t, recs, 1, order)
					ids[order] = recs[0].EventID
				}
				require.Len(t, ids, 3, "o-1 failed, o-3 pending, o-4 scheduled")
			},
			check: func(t *testing.T, out string) {
				rows := table(out)
				require.Len(t, rows, 2, out)
				require.Equal(t, []string{"OUTBOX", "PENDING", "FAILED", "PUBLISHED", "SCHEDULED", "NEXT DUE", "LAG"}, rows[0])
				require.Equal(t, []string{"orders_outbox", "1", "1", "1", "1", due.UTC().Format(time.RFC3339)}, rows[1][:6], out)
				lag, err := time.ParseDuration(rows[1][6])
				require.NoError(t, err, out)
				assert.Positive(t, lag, "o-3 waits")
			}},
		{line: regexp.MustCompile(`^go run \./cmd/eventkit outbox pending --db "\$DATABASE_URL" --outbox orders_outbox --limit 20$`),
			check: func(t *testing.T, out string) {
				rows := table(out)
				require.Len(t, rows, 3, out)
				assert.Equal(t, []string{ids["o-3"], topic, topic, "0"}, rows[1][:4], out)
				assert.Equal(t, "1 pending row(s)", rows[2][0])
			}},
		{line: regexp.MustCompile(`^go run \./cmd/eventkit outbox failed --db "\$DATABASE_URL" --outbox orders_outbox --json$`),
			check: func(t *testing.T, out string) {
				var failed []map[string]any
				require.NoError(t, json.Unmarshal([]byte(out), &failed), out)
				require.Len(t, failed, 1, out)
				assert.Equal(t, ids["o-1"], failed[0]["event_id"])
				assert.Equal(t, topic, failed[0]["name"])
				assert.EqualValues(t, 1, failed[0]["attempts"])
				assert.Contains(t, failed[0]["last_error"], "NO_ROUTE")
			}},
		{line: regexp.MustCompile(`^go run \./cmd/eventkit outbox scheduled --db "\$DATABASE_URL" --outbox orders_outbox$`),
			check: func(t *testing.T, out string) {
				rows := table(out)
				require.Len(t, rows, 3, out)
				assert.Equal(t, []string{ids["o-4"], topic, topic, due.UTC().Format(time.RFC3339)}, rows[1][:4], out)
				assert.Equal(t, "1 scheduled row(s)", rows[2][0])
			}},
		{line: regexp.MustCompile(`^go run \./cmd/eventkit outbox requeue --db "\$DATABASE_URL" --outbox orders_outbox EVENT_ID…$`),
			check: func(t *testing.T, out string) {
				assert.Equal(t, "outbox orders_outbox: requeued 1 failed event(s) of the 1 id(s) given\n", out)
				s := stats()
				assert.Equal(t, [2]int64{0, 2}, [2]int64{s.Failed, s.Pending}, "o-1 is pending again")
			}},
		{line: regexp.MustCompile(`^go run \./cmd/eventkit outbox purge --db "\$DATABASE_URL" --outbox orders_outbox --older-than 168h$`),
			check: func(t *testing.T, out string) {
				assert.Equal(t, "purged 1 published row(s) older than 168h0m0s\n", out)
				assert.Zero(t, stats().Published, "o-2 is gone")
			}},
		{line: regexp.MustCompile(`^go run \./cmd/eventkit outbox adopt --db "\$DATABASE_URL" --outbox orders_outbox$`),
			check: func(t *testing.T, out string) {
				// The stock forwarder had acknowledged o-1 and o-2: o-1 is
				// marked published (o-2 was purged), o-3 remains.
				assert.Equal(t, `outbox orders_outbox: marked 1 row(s) the stock forwarder (consumer group "") had published as published; 1 pending remain`+"\n", out)
				s := stats()
				assert.Equal(t, [2]int64{1, 1}, [2]int64{s.Published, s.Pending})
			}},
		{line: regexp.MustCompile(`^go run \./cmd/eventkit outbox handover --db "\$DATABASE_URL" --outbox orders_outbox$`),
			check: func(t *testing.T, out string) {
				assert.Equal(t, `outbox orders_outbox: stock forwarder (consumer group "") set to go on where the relay stopped; `+
					"it publishes 1 pending and 0 failed row(s), and again 0 row(s) the relay had published after the first of them\n", out)
			}},
		{line: regexp.MustCompile(`^go run \./cmd/eventkit dlq list --transport "\$TRANSPORT_URL" --topic orders\.order_created\.dlq$`),
			before: func(t *testing.T) { dead = deadLetter(t, ctx, amqpURL, reg) },
			check: func(t *testing.T, out string) {
				rows := table(out)
				require.Len(t, rows, 3, out)
				assert.Equal(t, []string{"EVENT ID", "NAME", "HANDLER", "REASON", "ATTEMPTS", "DELAYED", "FAILED AT", "ERROR"}, rows[0])
				assert.Equal(t, []string{dead.UUID, topic, "inventory.reserve-stock", "permanent", "1", "0"}, rows[1][:6], out)
				assert.Contains(t, rows[1][7], "out of stock")
				assert.Equal(t, "1 dead letter(s) listed from orders.order_created.dlq (group eventkit-dlq) of 1 message(s) read, nothing taken or changed", rows[2][0])
			}},
		{line: regexp.MustCompile(`^go run \./cmd/eventkit dlq replay --transport "\$TRANSPORT_URL" --topic orders\.order_created\.dlq --reason permanent$`),
			check: func(t *testing.T, out string) {
				assert.Equal(t, "replayed 1 dead letter(s) to their original topics; 0 kept in orders.order_created.dlq (0 not dead letters)\n", out)
				// Back on the handler's queue, with its event id, no longer a dead letter.
				tr, err := transports.Open(ctx, amqpURL)
				require.NoError(t, err)
				defer tr.Close()
				sub, err := tr.Subscriber("inventory.reserve-stock")
				require.NoError(t, err)
				defer sub.Close()
				msgs, err := sub.Subscribe(ctx, topic)
				require.NoError(t, err)
				select {
				case m := <-msgs:
					m.Ack()
					assert.Equal(t, dead.UUID, m.Metadata.Get(events.KeyEventID))
					assert.Empty(t, m.Metadata.Get(middleware.KeyReason))
				case <-ctx.Done():
					t.Fatal("the replayed event is not on orders.order_created")
				}
				assert.Zero(t, queueDepth(t, ctx, tr, dlq), "the dead-letter queue is empty")
			}},
		{line: regexp.MustCompile(`^go run \./cmd/eventkit version$`),
			check: func(t *testing.T, out string) {
				assert.Regexp(t, `^eventkit \S+\ngo +go1\.\d+\S* \S+/\S+\n`, out)
			}},
	}
	runSteps(t, b, steps, func() *strings.Replacer { return strings.NewReplacer("EVENT_ID…", ids["o-1"]) },
		"DATABASE_URL="+dbURL, "TRANSPORT_URL="+amqpURL)
}

// relayOnce runs a relay over ob until cond holds, with a publisher that
// refuses the message whose payload is reject (an error that is not an
// outage: the row is parked after its one attempt).
func relayOnce(t *testing.T, ctx context.Context, ob *forwarder.Outbox, reject string, cond func(forwarder.Stats) bool) {
	t.Helper()
	relay, err := forwarder.NewRelay(ob, refusing{reject}, forwarder.RelayConfig{MaxAttempts: 1, RetryInterval: 10 * time.Millisecond,
		MinPollInterval: 10 * time.Millisecond, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	require.Eventually(t, func() bool {
		s, err := ob.Stats(ctx)
		return err == nil && cond(s)
	}, 20*time.Second, 10*time.Millisecond)
}

// refusing is a broker that refuses one message and takes the others.
type refusing struct{ reject string }

func (p refusing) Publish(_ string, msgs ...*message.Message) error {
	for _, m := range msgs {
		if string(m.Payload) == p.reject {
			return errors.New("broker refused the message: 312 NO_ROUTE")
		}
	}
	return nil
}

func (refusing) Close() error { return nil }

// stockForwarderDrains runs a stock Watermill forwarder (watermill-sql's
// default PostgreSQL schema and offsets, consumer group "", publishing
// nowhere) on the outbox until it has acknowledged the last row: the
// progress outbox adopt takes over.
func stockForwarderDrains(t *testing.T, ctx context.Context, db *sql.DB, outbox string) {
	t.Helper()
	logger := watermill.NopLogger{}
	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(db), wmsql.SubscriberConfig{
		SchemaAdapter:    wmsql.DefaultPostgreSQLSchema{},
		OffsetsAdapter:   wmsql.DefaultPostgreSQLOffsetsAdapter{},
		InitializeSchema: true,
		PollInterval:     10 * time.Millisecond,
	}, logger)
	require.NoError(t, err)
	defer sub.Close()
	fwd, err := wmforwarder.NewForwarder(sub, refusing{}, logger, wmforwarder.Config{ForwarderTopic: outbox})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- fwd.Run(ctx) }()
	defer func() { cancel(); _ = fwd.Close(); <-done }()
	require.Eventually(t, func() bool {
		var drained bool
		err := db.QueryRowContext(ctx, `SELECT COALESCE((SELECT offset_acked FROM watermill_offsets_`+outbox+` WHERE consumer_group = ''), -1)
			= (SELECT MAX("offset") FROM watermill_`+outbox+`)`).Scan(&drained)
		return err == nil && drained
	}, 20*time.Second, 10*time.Millisecond, "the stock forwarder did not acknowledge the last row")
}

// deadLetter makes a dead letter of orders.order_created as a service
// does: its handler inventory.reserve-stock, behind the Default chain,
// fails with a permanent error. The handler's queue stays bound to the
// topic, for dlq replay to publish to.
func deadLetter(t *testing.T, ctx context.Context, amqpURL string, reg *events.Registry) *message.Message {
	t.Helper()
	tr, err := transports.Open(ctx, amqpURL)
	require.NoError(t, err)
	defer tr.Close()
	inbox, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
	require.NoError(t, err)
	chain, err := middleware.Default(middleware.DefaultConfig{Publisher: tr.Publisher(), Subscribers: tr.Subscriber, Inbox: inbox,
		Logger: quiet()})
	require.NoError(t, err)
	router, proc := consumer(t, tr, reg, chain, func(context.Context, *OrderCreated) error {
		return middleware.Permanent(errors.New("out of stock"))
	})
	require.NotNil(t, proc)
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	defer func() { require.NoError(t, router.Close()); require.NoError(t, <-done) }()
	<-router.Running()
	msg := encode(t, reg, OrderCreated{OrderID: "o-9"})
	require.NoError(t, tr.Publisher().Publish("orders.order_created", msg))
	require.Eventually(t, func() bool { return chain.DeadLettered() == 1 }, 20*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, queueDepth(t, ctx, tr, "orders.order_created.dlq"))
	return msg
}

// queueDepth is the number of messages waiting on topic for the
// dead-letter group (browsed: nothing is taken).
func queueDepth(t *testing.T, ctx context.Context, tr *transports.Transport, topic string) int {
	t.Helper()
	msgs, err := tr.Browse(ctx, topic, middleware.DeadLetterGroupDefault, 100)
	require.NoError(t, err)
	return len(msgs)
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }
