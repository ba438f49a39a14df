package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	wmforwarder "github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/b2131a45/eventkit/cmd/eventkit-bench/internal/brokers"
	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/transports"
)

// fill creates the outbox name and commits n events to it, 500 per
// transaction, all bound for topic.
func (b *bench) fill(ctx context.Context, name, topic string, n int) (*forwarder.Outbox, error) {
	ob, err := forwarder.NewOutbox(b.db, forwarder.OutboxConfig{
		Dialect: forwarder.Postgres, Registry: b.reg, Source: "bench", Name: name,
		Topic: func(string) string { return topic },
	})
	if err != nil {
		return nil, err
	}
	if err := ob.Setup(ctx); err != nil {
		return nil, err
	}
	for i := 0; i < n; i += 500 {
		tx, err := b.db.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		evts := make([]any, 0, 500)
		for j := i; j < min(i+500, n); j++ {
			evts = append(evts, event(j))
		}
		if err := ob.Add(ctx, tx, evts...); err != nil {
			_ = tx.Rollback()
			return nil, err
		}
		if err := tx.Commit(); err != nil {
			return nil, err
		}
	}
	// Fresh statistics, as an outbox that has been running would have.
	if _, err := b.db.ExecContext(ctx, `ANALYZE "`+ob.Table()+`"`); err != nil {
		return nil, err
	}
	return ob, nil
}

func event(i int) BenchEvent {
	return BenchEvent{
		OrderID:  fmt.Sprintf("order-%d", i%97),
		Customer: fmt.Sprintf("customer-%d@example.com", i%1000),
		Total:    1000 + i%5000,
		Seq:      i,
		Items:    []string{"sku-1", "sku-2", "sku-3"},
	}
}

func (b *bench) drop(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, q := range []string{
		`DROP TABLE IF EXISTS "watermill_` + name + `_scheduled"`,
		`DROP TABLE IF EXISTS "watermill_` + name + `"`,
		`DROP TABLE IF EXISTS "watermill_offsets_` + name + `"`,
		`DROP FUNCTION IF EXISTS "watermill_` + name + `_notify"()`,
	} {
		_, _ = b.db.ExecContext(ctx, q)
	}
}

// drainer starts relaying ob to the broker and returns how to stop it.
type drainer struct {
	label string
	start func(ctx context.Context, ob *forwarder.Outbox) (stop func(), err error)
	// done reports whether every row was confirmed and marked.
	done func(ctx context.Context, ob *forwarder.Outbox) (bool, error)
}

// eventkitDrainer runs a Relay with pub.
func (b *bench) eventkitDrainer(label string, pub func() (message.Publisher, error)) drainer {
	return drainer{
		label: label,
		start: func(ctx context.Context, ob *forwarder.Outbox) (func(), error) {
			p, err := pub()
			if err != nil {
				return nil, err
			}
			relay, err := forwarder.NewRelay(ob, p, forwarder.RelayConfig{BatchSize: b.o.batch, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				return nil, err
			}
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = relay.Run(rctx)
			}()
			return func() {
				cancel()
				<-done
				_ = p.Close()
			}, nil
		},
		done: func(ctx context.Context, ob *forwarder.Outbox) (bool, error) {
			var pending bool
			err := b.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM "`+ob.Table()+`" WHERE status = 0)`).Scan(&pending)
			return !pending, err
		},
	}
}

// stockDrainer runs Watermill's forwarder over watermill-sql's default
// PostgreSQL schema (a subscriber of topic ob.Name()) with pub.
func (b *bench) stockDrainer(label string, pub func() (message.Publisher, error)) drainer {
	return drainer{
		label: label,
		start: func(ctx context.Context, ob *forwarder.Outbox) (func(), error) {
			p, err := pub()
			if err != nil {
				return nil, err
			}
			logger := watermill.NopLogger{}
			sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(b.db), wmsql.SubscriberConfig{
				ConsumerGroup:    "bench",
				SchemaAdapter:    wmsql.DefaultPostgreSQLSchema{},
				OffsetsAdapter:   wmsql.DefaultPostgreSQLOffsetsAdapter{},
				InitializeSchema: true,
			}, logger)
			if err != nil {
				return nil, err
			}
			fwd, err := wmforwarder.NewForwarder(sub, p, logger, wmforwarder.Config{ForwarderTopic: ob.Name(), AckWhenCannotUnwrap: true})
			if err != nil {
				return nil, err
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = fwd.Run(ctx)
			}()
			return func() {
				_ = fwd.Close()
				<-done
				_ = sub.Close()
				_ = p.Close()
			}, nil
		},
		done: func(ctx context.Context, ob *forwarder.Outbox) (bool, error) {
			var acked, last int64
			err := b.db.QueryRowContext(ctx, `SELECT COALESCE((SELECT offset_acked FROM "watermill_offsets_`+ob.Name()+
				`" WHERE consumer_group = 'bench'), -1), (SELECT COALESCE(MAX("offset"), 0) FROM "`+ob.Table()+`")`).Scan(&acked, &last)
			if err != nil && strings.Contains(err.Error(), "does not exist") {
				return false, nil // the offsets table is created when the forwarder subscribes
			}
			return acked >= last, err
		},
	}
}

// drainOnce fills an outbox with n events, drains it with d and returns
// events/s until every row is marked (acked, for the stock forwarder) and,
// when check is set, until the broker also holds every event (the same for
// a relay that waits for confirms; later for a publisher that does not).
//
// Then consume reads the broker and the events it received are counted by
// id against the outbox: a missing event fails the run (an error saying
// EVENTS LOST); duplicates are returned.
func (b *bench) drainOnce(ctx context.Context, d drainer, bt *brokerTopic, n int) (marked, inBroker float64, dups int, err error) {
	name := b.name("drain")
	defer b.drop(name)
	ob, err := b.fill(ctx, name, bt.name, n)
	if err != nil {
		return 0, 0, 0, err
	}
	ids, err := b.outboxIDs(ctx, ob.Table())
	if err != nil {
		return 0, 0, 0, err
	}
	if err := bt.reset(); err != nil {
		return 0, 0, 0, err
	}
	marked, inBroker, err = b.drainRun(ctx, d, ob, n, bt.count)
	if err != nil {
		return 0, 0, 0, err
	}
	t := newTally(ids)
	if err := bt.consume(t); err != nil {
		return 0, 0, 0, fmt.Errorf("%s: consumer: %w", d.label, err)
	}
	dups, err = t.check(d.label)
	return marked, inBroker, dups, err
}

// drainRun starts d on ob and times it until every row is marked, then
// until the broker holds n events.
func (b *bench) drainRun(ctx context.Context, d drainer, ob *forwarder.Outbox, n int, check func() (int, error)) (marked, inBroker float64, err error) {
	began := time.Now()
	stop, err := d.start(ctx, ob)
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		ok, err := d.done(ctx, ob)
		if err != nil {
			return 0, 0, err
		}
		if ok {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, 0, fmt.Errorf("%s did not drain in time", d.label)
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(began)
	marked = float64(n) / elapsed.Seconds()
	if check == nil {
		return marked, marked, nil
	}
	var got int
	for wait := time.Now().Add(30 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		if got, err = check(); err != nil {
			return 0, 0, err
		}
		if got >= n || time.Now().After(wait) {
			break
		}
	}
	if got < n {
		return 0, 0, fmt.Errorf("EVENTS LOST: %s: the broker has %d of %d events", d.label, got, n)
	}
	return marked, float64(n) / max(time.Since(began), elapsed).Seconds(), nil
}

// ---- RabbitMQ ----------------------------------------------------------------

type rabbit struct {
	conn *amqp.Connection
	ch   *amqp.Channel
}

func dialRabbit(url string) (*rabbit, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return nil, fmt.Errorf("RabbitMQ: %w", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return &rabbit{conn: conn, ch: ch}, nil
}

func (r *rabbit) close() { _ = r.conn.Close() }

func (r *rabbit) declare(queue string, args amqp.Table) error {
	_, err := r.ch.QueueDeclare(queue, true, false, false, false, args)
	return err
}

func (r *rabbit) purge(queue string) error {
	_, err := r.ch.QueuePurge(queue, false)
	return err
}

func (r *rabbit) count(queue string) (int, error) {
	q, err := r.ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	return q.Messages, err
}

// useTransports reports whether eventkit publishes through the transports
// package (its AMQP topology: a fanout exchange per topic) rather than the
// bench's own publishers (the default exchange, a queue per topic).
func (b *bench) useTransports() bool { return b.o.publisher == "transports" }

// queueOf is the queue that receives topic's messages.
func (b *bench) queueOf(topic string) string {
	if b.useTransports() {
		return topic + "_bench"
	}
	return topic
}

// declare declares the topology of topic, its queue with args.
func (b *bench) declare(r *rabbit, topic string, args amqp.Table) error {
	if !b.useTransports() {
		return r.declare(topic, args)
	}
	if err := r.ch.ExchangeDeclare(topic, "fanout", true, false, false, false, nil); err != nil {
		return err
	}
	if err := r.declare(b.queueOf(topic), args); err != nil {
		return err
	}
	return r.ch.QueueBind(b.queueOf(topic), "", topic, false, nil)
}

func (b *bench) undeclare(r *rabbit, topic string) {
	_, _ = r.ch.QueueDelete(b.queueOf(topic), false, false, false)
	if b.useTransports() {
		_ = r.ch.ExchangeDelete(topic, false, false)
	}
}

// stockAMQP is watermill-amqp on the same topology as eventkit's publisher.
func (b *bench) stockAMQP(confirm bool, pool int) func() (message.Publisher, error) {
	return func() (message.Publisher, error) {
		cfg := wmamqp.NewDurableQueueConfig(b.o.amqpURL)
		if b.useTransports() {
			cfg = wmamqp.NewDurablePubSubConfig(b.o.amqpURL, wmamqp.GenerateQueueNameTopicNameWithSuffix("bench"))
		}
		cfg.Publish.ConfirmDelivery = confirm
		cfg.Publish.ChannelPoolSize = pool
		return wmamqp.NewPublisher(cfg, watermill.NopLogger{})
	}
}

// eventkitAMQP is the relay's publisher: transports.Open's, or the bench's.
func (b *bench) eventkitAMQP() func() (message.Publisher, error) {
	if b.useTransports() {
		return b.transport(b.o.amqpURL)
	}
	return func() (message.Publisher, error) { return brokers.NewAMQP(b.o.amqpURL, false), nil }
}

// transport opens url with transports.Open; closing the publisher closes it.
func (b *bench) transport(url string) func() (message.Publisher, error) {
	return func() (message.Publisher, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		t, err := transports.Open(ctx, url)
		if err != nil {
			return nil, err
		}
		return transportPublisher{Publisher: t.Publisher(), t: t}, nil
	}
}

type transportPublisher struct {
	message.Publisher
	t *transports.Transport
}

func (p transportPublisher) Close() error { return p.t.Close() }

// brokerTopic is the broker side of a scenario: a topic, and how to empty
// what a consumer would read of it, count what it holds and read it all.
type brokerTopic struct {
	name    string
	reset   func() error
	count   func() (int, error)
	consume func(*tally) error
}

// amqpTopic declares a fresh RabbitMQ topic (exchange and queue) named
// prefix plus a timestamp; the returned func deletes it.
func (b *bench) amqpTopic(prefix string) (*brokerTopic, func(), error) {
	r, err := dialRabbit(b.o.amqpURL)
	if err != nil {
		return nil, nil, err
	}
	topic := fmt.Sprintf("%s.%d", prefix, time.Now().UnixNano())
	if err := b.declare(r, topic, nil); err != nil {
		r.close()
		return nil, nil, err
	}
	queue := b.queueOf(topic)
	return &brokerTopic{
			name:    topic,
			reset:   func() error { return r.purge(queue) },
			count:   func() (int, error) { return r.count(queue) },
			consume: func(t *tally) error { return consumeAMQP(b.o.amqpURL, queue, t, 5*time.Second) },
		}, func() {
			b.undeclare(r, topic)
			r.close()
		}, nil
}

func (b *bench) amqpDrain(ctx context.Context, onlyEventkit bool) error {
	bt, closeTopic, err := b.amqpTopic("bench.amqp")
	if err != nil {
		return err
	}
	defer closeTopic()

	drainers := []drainer{
		b.eventkitDrainer("eventkit relay (pipelined confirms)", b.eventkitAMQP()),
		b.stockDrainer("stock, confirms, ChannelPoolSize 1", b.stockAMQP(true, 1)),
		b.stockDrainer("stock, confirms, default pool", b.stockAMQP(true, 0)),
		b.stockDrainer("stock, no confirms, ChannelPoolSize 1", b.stockAMQP(false, 1)),
		b.stockDrainer("stock, no confirms, default pool", b.stockAMQP(false, 0)),
	}
	if onlyEventkit {
		drainers = drainers[:1]
	}
	results, inBroker := map[string][]float64{}, map[string][]float64{}
	var raw []float64
	n := b.o.events
	fmt.Printf("\n== PostgreSQL outbox → RabbitMQ, %d events, %d runs, eventkit publisher: %s ==\n", n, b.o.runs, b.o.publisher)
	fmt.Printf("  (events/s until every row is marked, or acked by the stock forwarder; and until the queue holds every event)\n")
	for run := 0; run < b.o.runs; run++ {
		for _, d := range drainers {
			eps, epsb, dups, err := b.drainOnce(ctx, d, bt, n)
			if err != nil {
				return err
			}
			results[d.label] = append(results[d.label], eps)
			inBroker[d.label] = append(inBroker[d.label], epsb)
			fmt.Printf("  run %d  %-42s %8.0f events/s  (in broker: %8.0f)  consumer: 0 missing, %d duplicates\n", run+1, d.label, eps, epsb, dups)
		}
		eps, dups, err := b.rawAMQP(bt, n)
		if err != nil {
			return err
		}
		raw = append(raw, eps)
		fmt.Printf("  run %d  %-42s %8.0f events/s  consumer: 0 missing, %d duplicates\n", run+1, "raw pipelined confirms (ceiling)", eps, dups)
	}
	ek := median(results[drainers[0].label])
	ceiling := median(raw)
	fmt.Printf("  medians:\n")
	for _, d := range drainers {
		fmt.Printf("    %-42s %8.0f events/s  (in broker: %8.0f)\n", d.label, median(results[d.label]), median(inBroker[d.label]))
	}
	fmt.Printf("    %-42s %8.0f events/s\n", "raw pipelined confirms (ceiling)", ceiling)
	if onlyEventkit {
		fmt.Printf("  eventkit / raw pipelined confirms: %s\n", ratio(ek, ceiling))
		return nil
	}
	bestConfirm := max(median(results[drainers[1].label]), median(results[drainers[2].label]))
	bestNoConfirm := max(median(results[drainers[3].label]), median(results[drainers[4].label]))
	bestNoConfirmB := max(median(inBroker[drainers[3].label]), median(inBroker[drainers[4].label]))
	fmt.Printf("  eventkit / best stock with confirms:    %s (target ≥ 5×)    %s\n", ratio(ek, bestConfirm), pass(ek >= 5*bestConfirm))
	fmt.Printf("  eventkit / best stock without confirms: %s (target ≥ 1.2×)  %s   [stock counted until acked]\n", ratio(ek, bestNoConfirm), pass(ek >= 1.2*bestNoConfirm))
	fmt.Printf("  eventkit / best stock without confirms: %s (target ≥ 1.2×)  %s   [stock counted until the queue holds every event]\n", ratio(ek, bestNoConfirmB), pass(ek >= 1.2*bestNoConfirmB))
	fmt.Printf("  eventkit / raw pipelined confirms:      %s (target ≥ 0.60×) %s\n", ratio(ek, ceiling), pass(ek >= 0.6*ceiling))
	b.record(result{Group: "drain", Label: "drain → RabbitMQ, stock confirms on", Eventkit: ek, Stock: bestConfirm, Unit: "events/s", HigherBetter: true,
		Target: "≥ 5×", Met: ek >= 5*bestConfirm})
	b.record(result{Group: "drain", Label: "drain → RabbitMQ, stock confirms off", Eventkit: ek, Stock: bestNoConfirm, Unit: "events/s", HigherBetter: true,
		Target: "≥ 1.2×", Met: ek >= 1.2*bestNoConfirm})
	b.record(result{Group: "drain", Label: "drain → RabbitMQ vs direct publish", Eventkit: ek, Stock: ceiling, StockLabel: "direct", Unit: "events/s", HigherBetter: true,
		Target: "≥ 0.60×", Met: ek >= 0.6*ceiling})
	return nil
}

// rawAMQP publishes n events straight to RabbitMQ with pipelined confirms,
// in calls of 1,000: no database, the ceiling of any relay.
// The consumer then counts them by id.
func (b *bench) rawAMQP(bt *brokerTopic, n int) (eps float64, dups int, err error) {
	if err := bt.reset(); err != nil {
		return 0, 0, err
	}
	_, msgs, err := b.messages(n)
	if err != nil {
		return 0, 0, err
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.UUID
	}
	pub := brokers.NewAMQP(b.o.amqpURL, b.useTransports())
	defer pub.Close()
	began := time.Now()
	for i := 0; i < n; i += 1000 {
		if err := pub.Publish(bt.name, msgs[i:min(i+1000, n)]...); err != nil {
			return 0, 0, err
		}
	}
	elapsed := time.Since(began)
	got, err := bt.count()
	if err != nil {
		return 0, 0, err
	}
	if got < n {
		return 0, 0, fmt.Errorf("EVENTS LOST: raw: the broker has %d of %d events", got, n)
	}
	t := newTally(ids)
	if err := bt.consume(t); err != nil {
		return 0, 0, fmt.Errorf("raw: consumer: %w", err)
	}
	dups, err = t.check("raw pipelined confirms")
	return float64(n) / elapsed.Seconds(), dups, err
}

// direct is the ceiling on its own: the events of a drain published
// straight to RabbitMQ with pipelined confirms, no database, -runs times.
func (b *bench) direct(ctx context.Context) error {
	bt, closeTopic, err := b.amqpTopic("bench.direct")
	if err != nil {
		return err
	}
	defer closeTopic()
	n := b.o.events
	fmt.Printf("\n== direct: %d events straight to RabbitMQ, pipelined confirms (calls of 1,000), no database, %d runs ==\n", n, b.o.runs)
	var raw []float64
	for run := 0; run < b.o.runs && ctx.Err() == nil; run++ {
		eps, dups, err := b.rawAMQP(bt, n)
		if err != nil {
			return err
		}
		raw = append(raw, eps)
		fmt.Printf("  run %d  %8.0f events/s  consumer: 0 missing, %d duplicates\n", run+1, eps, dups)
	}
	fmt.Printf("  median %8.0f events/s\n", median(raw))
	b.record(result{Group: "direct", Label: "direct pipelined publish to RabbitMQ (no database)", Eventkit: median(raw), EventkitLabel: "raw", Unit: "events/s", HigherBetter: true})
	return nil
}

// messages encodes n events as the outbox would.
func (b *bench) messages(n int) (*cqrs.Bus, []*message.Message, error) {
	bus, err := cqrs.NewBus(discard{}, cqrs.BusConfig{Registry: b.reg, Source: "bench"})
	if err != nil {
		return nil, nil, err
	}
	evts := make([]any, n)
	for i := range evts {
		evts[i] = event(i)
	}
	msgs, _, err := bus.Messages(context.Background(), evts...)
	return bus, msgs, err
}

type discard struct{}

func (discard) Publish(string, ...*message.Message) error { return nil }
func (discard) Close() error                              { return nil }

// ---- Kafka (kfake) -------------------------------------------------------------

func (b *bench) kafkaDrain(ctx context.Context) error {
	topic := "bench.kafka"
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topic))
	if err != nil {
		return err
	}
	defer cluster.Close()
	addrs := cluster.ListenAddrs()

	client, err := sarama.NewClient(addrs, sarama.NewConfig())
	if err != nil {
		return err
	}
	defer client.Close()
	var base int
	from := map[int32]int64{}
	total := func(offsets map[int32]int64) (int, error) {
		sum := 0
		for p := range int32(4) {
			off, err := client.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				return 0, err
			}
			if offsets != nil {
				offsets[p] = off
			}
			sum += int(off)
		}
		return sum, nil
	}
	bt := &brokerTopic{
		name: topic,
		reset: func() error {
			var err error
			base, err = total(from)
			return err
		},
		count: func() (int, error) {
			t, err := total(nil)
			return t - base, err
		},
		consume: func(t *tally) error { return consumeKafka(client, topic, from, t) },
	}

	drainers := []drainer{
		b.eventkitDrainer("eventkit relay (batched, acks=all)", b.eventkitKafka(addrs)),
		b.stockDrainer("stock forwarder + watermill-kafka", func() (message.Publisher, error) {
			return wmkafka.NewPublisher(wmkafka.PublisherConfig{Brokers: addrs, Marshaler: wmkafka.DefaultMarshaler{}}, watermill.NopLogger{})
		}),
	}
	results := map[string][]float64{}
	n := b.o.events
	fmt.Printf("\n== PostgreSQL outbox → Kafka (kfake, in process), %d events, %d runs, eventkit publisher: %s ==\n", n, b.o.runs, b.o.publisher)
	for run := 0; run < b.o.runs; run++ {
		for _, d := range drainers {
			eps, _, dups, err := b.drainOnce(ctx, d, bt, n)
			if err != nil {
				return err
			}
			results[d.label] = append(results[d.label], eps)
			fmt.Printf("  run %d  %-42s %8.0f events/s  consumer: 0 missing, %d duplicates\n", run+1, d.label, eps, dups)
		}
	}
	ek, stock := median(results[drainers[0].label]), median(results[drainers[1].label])
	fmt.Printf("  medians: eventkit %.0f events/s, stock %.0f events/s\n", ek, stock)
	fmt.Printf("  eventkit / stock forwarder: %s (target ≥ 2×) %s\n", ratio(ek, stock), pass(ek >= 2*stock))
	b.record(result{Group: "drain", Label: "drain → Kafka (kfake)", Eventkit: ek, Stock: stock, Unit: "events/s", HigherBetter: true,
		Target: "≥ 2×", Met: ek >= 2*stock})
	return nil
}

func (b *bench) eventkitKafka(addrs []string) func() (message.Publisher, error) {
	if b.useTransports() {
		return b.transport("kafka://" + strings.Join(addrs, ","))
	}
	return func() (message.Publisher, error) { return brokers.NewKafka(addrs) }
}
