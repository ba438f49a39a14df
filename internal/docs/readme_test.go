package docs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/kafkatest"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

// The events of the README's snippets.

// OrderCreated is version 2: version 1 carried the total as a float in
// "total_amount" (orderCreatedV1toV2).
type OrderCreated struct {
	OrderID    string `json:"order_id"`
	TotalCents int64  `json:"total_cents,omitempty"`
}

// StockReserved is what inventory publishes for an order.
type StockReserved struct {
	OrderID string `json:"order_id"`
}

func orderCreatedV1toV2(old []byte) ([]byte, error) {
	var v1 struct {
		OrderID     string  `json:"order_id"`
		TotalAmount float64 `json:"total_amount"`
	}
	if err := json.Unmarshal(old, &v1); err != nil {
		return nil, err
	}
	return json.Marshal(OrderCreated{OrderID: v1.OrderID, TotalCents: int64(v1.TotalAmount*100 + 0.5)})
}

// readmeExample is README.md's "A 20-line example", with what it leaves to
// the program around it: ctx, logger, requestID. Once it has published,
// check looks at the transport (a group subscribing late to a topic of
// mem:// still gets what was published before).
func readmeExample(ctx context.Context, logger watermill.LoggerAdapter, requestID string, check func(*transports.Transport)) {
	// docs:begin example
	reg := events.NewRegistry()
	events.MustRegister[OrderCreated](reg, "orders.order_created", events.Version(2),
		events.Upcast(1, orderCreatedV1toV2))
	events.MustRegister[StockReserved](reg, "inventory.stock_reserved")

	t, _ := transports.Open(ctx, os.Getenv("TRANSPORT_URL")) // amqp://… kafka://… mem://
	defer t.Close()

	bus, _ := cqrs.NewBus(t.Publisher(), cqrs.BusConfig{Registry: reg, Source: "orders"})
	router, _ := message.NewRouter(message.RouterConfig{}, logger)
	proc, _ := cqrs.NewProcessor(router, t.Subscriber, cqrs.ProcessorConfig{Registry: reg,
		DeadLetter: t.Publisher()}) // what cannot be decoded goes to <topic>.dlq, never loops
	_ = proc.AddHandlers(cqrs.NewHandler("inventory.reserve-stock",
		func(ctx context.Context, e *OrderCreated) error {
			env, _ := events.EnvelopeFromContext(ctx) // id, correlation, causation, version…
			log.Println("reserving for", e.OrderID, "in conversation", env.CorrelationID)
			return bus.Publish(ctx, StockReserved{OrderID: e.OrderID}) // keeps correlation, sets causation
		}),
		cqrs.NewHandler("payments.charge", func(ctx context.Context, e *StockReserved) error {
			log.Println("charging", e.OrderID) // RabbitMQ refuses to publish an event that no queue takes
			return nil
		}))
	go router.Run(ctx)
	<-router.Running()
	_ = bus.Publish(events.WithCorrelationID(ctx, requestID), OrderCreated{OrderID: "o-1"})
	// docs:end example
	defer router.Close()
	check(t)
}

// The README's example, as a user runs it with TRANSPORT_URL set to
// mem://, amqp:// (a vhost of the test's own) and kafka:// (kfake): the
// handler gets o-1 and publishes StockReserved, which payments.charge gets;
// nothing is dead-lettered, and what the example prints says so. On mem://
// the envelopes are checked too: StockReserved is in the order's
// conversation (requestID) and caused by it. Not parallel: the example
// reads TRANSPORT_URL, and what it prints goes through the log package.
func TestReadmeExample(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"mem", func(*testing.T) string { return "mem://" }},
		{"amqp", func(t *testing.T) string { return testenv.AMQPVhost(t) }},
		{"kafka", func(t *testing.T) string {
			return "kafka://" + strings.Join(kafkatest.Cluster(t).ListenAddrs(), ",") + "?heartbeat_interval=100ms&session_timeout=1s"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TRANSPORT_URL", tc.url(t))
			printed := captureLog(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			readmeExample(ctx, watermill.NopLogger{}, "request-42", func(tr *transports.Transport) {
				require.Eventually(t, func() bool { return strings.Contains(printed.String(), "charging o-1\n") },
					20*time.Second, 10*time.Millisecond, "the example printed:\n%s", printed)
				if tc.name == "mem" {
					o, err := events.EnvelopeFromMessage(next(t, ctx, tr, "orders.order_created"))
					require.NoError(t, err)
					reserved := next(t, ctx, tr, "inventory.stock_reserved")
					require.Equal(t, `{"order_id":"o-1"}`, string(reserved.Payload))
					r, err := events.EnvelopeFromMessage(reserved)
					require.NoError(t, err)
					require.Equal(t, "request-42", o.CorrelationID)
					require.Equal(t, 2, o.Version)
					require.Equal(t, "request-42", r.CorrelationID, "keeps correlation")
					require.Equal(t, o.ID, r.CausationID, "sets causation")
				}
			})
			require.Equal(t, "reserving for o-1 in conversation request-42\ncharging o-1\n", printed.String(),
				"what the example printed (and eventkit logged: nothing dead-lettered)")
		})
	}
}

// captureLog sends what the log package prints (and slog's default logger,
// which prints through it) to a buffer until t ends, without timestamps.
// Only for tests that are not parallel.
func captureLog(t *testing.T) *testenv.Buffer {
	t.Helper()
	var b testenv.Buffer
	w, flags := log.Writer(), log.Flags()
	log.SetOutput(&b)
	log.SetFlags(0)
	t.Cleanup(func() { log.SetOutput(w); log.SetFlags(flags) })
	return &b
}

// next returns the next message of topic for a consumer group of the
// test's own, acked.
func next(t *testing.T, ctx context.Context, tr *transports.Transport, topic string) *message.Message {
	t.Helper()
	sub, err := tr.Subscriber(testenv.Name(t, "check"))
	require.NoError(t, err)
	defer sub.Close()
	msgs, err := sub.Subscribe(ctx, topic)
	require.NoError(t, err)
	select {
	case m := <-msgs:
		m.Ack()
		return m
	case <-ctx.Done():
		t.Fatalf("nothing on %s: %v", topic, ctx.Err())
		return nil
	}
}

// readmeOutbox is README.md's "The outbox" snippet, with what it leaves to
// the program around it: ctx, db (with the service's orders table), reg
// (OrderCreated registered), t (the transport) and id (the order's).
func readmeOutbox(ctx context.Context, db *sql.DB, reg *events.Registry, t *transports.Transport, id string) (*forwarder.Outbox, *forwarder.Relay) {
	// docs:begin outbox
	ob, _ := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Source: "orders"})
	_ = ob.Setup(ctx) // PostgreSQL, MySQL or SQLite; idempotent, safe from many instances

	tx, _ := db.BeginTx(ctx, nil)
	_, _ = tx.ExecContext(ctx, `INSERT INTO orders (id) VALUES ($1)`, id)
	_ = ob.Add(ctx, tx, OrderCreated{OrderID: id}) // same transaction (*sql.Tx or pgx.Tx)
	_ = tx.Commit()                                // rolled back → no event; committed → always relayed

	relay, _ := forwarder.NewRelay(ob, t.Publisher(), forwarder.RelayConfig{MaxAttempts: 5})
	go relay.Run(ctx) // confirmed publishes, commit order, LISTEN/NOTIFY on PostgreSQL
	// docs:end outbox
	return ob, relay
}

// The README's outbox on SQLite and PostgreSQL (a schema of the test's
// own): the order row and its event commit together, and the relay
// publishes the event, with the outbox's source, to mem://.
func TestReadmeOutbox(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		open func(t *testing.T) (*sql.DB, string)
	}{{"sqlite", sqliteDB}, {"postgres", postgresSchema}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db, _ := tc.open(t)
			_, err := db.Exec(`CREATE TABLE orders (id TEXT PRIMARY KEY)`) // the service's own table
			require.NoError(t, err)
			reg := events.NewRegistry()
			events.MustRegister[OrderCreated](reg, "orders.order_created", events.Version(2), events.Upcast(1, orderCreatedV1toV2))
			tr := memTransport(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			ob, relay := readmeOutbox(ctx, db, reg, tr, "o-7")
			t.Cleanup(func() { _ = ob.Drop(context.Background()) })
			msg := next(t, ctx, tr, "orders.order_created")
			env, err := events.EnvelopeFromMessage(msg)
			require.NoError(t, err)
			require.Equal(t, "orders", env.Source)
			require.Equal(t, 2, env.Version)
			require.JSONEq(t, `{"order_id":"o-7"}`, string(msg.Payload))
			var orders int
			require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM orders WHERE id = 'o-7'`).Scan(&orders))
			require.Equal(t, 1, orders, "the order row committed with its event")
			require.Eventually(t, func() bool {
				s, err := ob.Stats(ctx)
				return err == nil && s.Published == 1 && s.Pending == 0 && s.Failed == 0
			}, 10*time.Second, 10*time.Millisecond, "the relay marks the row published")
			cancel()
			waitStopped(t, relay)
		})
	}
}

// waitStopped waits until relay.Run has returned.
func waitStopped(t *testing.T, relay *forwarder.Relay) {
	t.Helper()
	require.Eventually(t, func() bool {
		return errors.Is(relay.Health(context.Background()), forwarder.ErrRelayNotRunning)
	}, 10*time.Second, 10*time.Millisecond, "the relay did not stop")
}

// readmeMiddleware is README.md's "Consumer middleware" snippet, with what
// it leaves to the program around it: t, inbox, router. added gets the
// chain.
func readmeMiddleware(t *transports.Transport, inbox middleware.InboxStore, router *message.Router, added func(*middleware.Chain)) error {
	// docs:begin middleware
	chain, err := middleware.Default(middleware.DefaultConfig{
		Publisher:   t.Publisher(), // dead letters go to <topic>.dlq
		Subscribers: t.Subscriber,  // declares the DLQ queue on AMQP
		Inbox:       inbox,         // middleware.NewPostgresInbox(db, …), MySQL, SQLite, memory
		InTx:        true,          // handler, inbox row and outbox writes commit together
	})
	if err != nil {
		return err // e.g. an inbox that would forget events before their retries end
	}
	router.AddMiddleware(chain.Middlewares()...)
	// Recover → Correlation → PoisonQueue → DelayedRetry → Retry → Timeout → Deduplicate → Recover → handler
	// docs:end middleware
	added(chain)
	return nil
}

// The README's middleware on mem:// with a SQLite inbox: the handler runs
// in the inbox transaction, where its write and the event it adds to the
// outbox commit with the inbox row; the duplicate of an event is removed;
// a permanent error goes to <topic>.dlq with its writes rolled back.
func TestReadmeMiddleware(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, _ := sqliteDB(t)
	_, err := db.Exec(`CREATE TABLE reserved (order_id TEXT PRIMARY KEY)`)
	require.NoError(t, err)
	inbox, err := middleware.NewSQLiteInbox(db, middleware.InboxConfig{})
	require.NoError(t, err)
	require.NoError(t, inbox.Setup(ctx))
	reg := events.NewRegistry()
	events.MustRegister[OrderCreated](reg, "orders.order_created", events.Version(2), events.Upcast(1, orderCreatedV1toV2))
	events.MustRegister[StockReserved](reg, "inventory.stock_reserved")
	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Source: "inventory"})
	require.NoError(t, err)
	require.NoError(t, ob.Setup(ctx))
	tr := memTransport(t)
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)

	var chain *middleware.Chain
	require.NoError(t, readmeMiddleware(tr, inbox, router, func(c *middleware.Chain) { chain = c }))

	proc, err := cqrs.NewProcessor(router, tr.Subscriber, cqrs.ProcessorConfig{Registry: reg, DeadLetter: tr.Publisher()})
	require.NoError(t, err)
	require.NoError(t, proc.AddHandlers(cqrs.NewHandler("inventory.reserve-stock", func(ctx context.Context, e *OrderCreated) error {
		tx, ok := middleware.TxFromContext(ctx)
		if !ok {
			return errors.New("no inbox transaction in the handler's context")
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO reserved (order_id) VALUES ($1)`, e.OrderID); err != nil {
			return err
		}
		if err := ob.Add(ctx, tx, StockReserved{OrderID: e.OrderID}); err != nil {
			return err
		}
		if e.OrderID == "o-poison" {
			return middleware.Permanent(errors.New("unknown SKU"))
		}
		return nil
	})))
	ran := make(chan error, 1)
	go func() { ran <- router.Run(ctx) }()
	defer func() { require.NoError(t, router.Close()); require.NoError(t, <-ran) }()
	<-router.Running()

	bus, err := cqrs.NewBus(twice{tr.Publisher()}, cqrs.BusConfig{Registry: reg, Source: "orders"})
	require.NoError(t, err)
	require.NoError(t, bus.Publish(ctx, OrderCreated{OrderID: "o-1"}))
	require.NoError(t, tr.Publisher().Publish("orders.order_created", encode(t, reg, OrderCreated{OrderID: "o-poison"})))
	require.Eventually(t, func() bool { return chain.Duplicates() == 1 && chain.DeadLettered() == 1 },
		20*time.Second, 10*time.Millisecond, "duplicates %d, dead letters %d", chain.Duplicates(), chain.DeadLettered())

	dead := next(t, ctx, tr, "orders.order_created.dlq")
	require.Equal(t, "permanent", dead.Metadata.Get(middleware.KeyReason))
	var reserved []string
	rows, err := db.Query(`SELECT order_id FROM reserved`)
	require.NoError(t, err)
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		reserved = append(reserved, id)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"o-1"}, reserved, "o-1 once; o-poison's write rolled back")
	pending, err := ob.Pending(ctx, 10)
	require.NoError(t, err)
	require.Len(t, pending, 1, "the event o-1's handler added, once; none for o-poison")
	require.Equal(t, "inventory.stock_reserved", pending[0].Name)
}

// twice publishes every message twice, as a relay does after a crash
// between the broker's confirm and the outbox update.
type twice struct{ message.Publisher }

func (p twice) Publish(topic string, msgs ...*message.Message) error {
	if err := p.Publisher.Publish(topic, msgs...); err != nil {
		return err
	}
	return p.Publisher.Publish(topic, msgs...)
}

// encode is evt as a Bus would publish it.
func encode(t *testing.T, reg *events.Registry, evt any) *message.Message {
	t.Helper()
	var msg *message.Message
	bus, err := cqrs.NewBus(capture(func(m *message.Message) { msg = m }), cqrs.BusConfig{Registry: reg})
	require.NoError(t, err)
	require.NoError(t, bus.Publish(context.Background(), evt))
	return msg
}

// capture is a publisher that hands each message to a function.
type capture func(*message.Message)

func (c capture) Publish(_ string, msgs ...*message.Message) error {
	for _, m := range msgs {
		c(m)
	}
	return nil
}

func (capture) Close() error { return nil }
