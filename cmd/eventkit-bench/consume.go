package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/cmd/eventkit-bench/internal/brokers"
	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

// consumer is one way of handling the events of a RabbitMQ queue.
type consumer struct {
	label    string
	eventkit bool
	group    string // the queue is topic + "_" + group
	parallel int    // competing consumers of the queue (replicas), each one router
	// diagnostic variants are printed but are in neither best figure.
	diagnostic bool
	// run subscribes to topic as group and handles every event with
	// handled(eventID) until ctx ends.
	run func(ctx context.Context, topic, group string, handled func(id string), running chan<- struct{}) error
}

// consume measures handler throughput on RabbitMQ: the same -events
// events, already queued, handled by a bare Watermill handler on
// watermill-amqp (its defaults, and a prefetch of 100) and by an eventkit
// typed handler behind middleware.Default with a PostgreSQL inbox on the
// transports package's AMQP subscriber (its default prefetch, and 100), and
// the same with a group-commit inbox and 8 messages in flight per consumer.
// Every consumer gets its own queue bound to the topic's exchange; the
// variants run one after the other, in the same order each round.
func (b *bench) consume(ctx context.Context) error {
	r, err := dialRabbit(b.o.amqpURL)
	if err != nil {
		return err
	}
	defer r.close()
	name := b.name("consume")
	topic := "bench.consume." + name
	inbox, err := middleware.NewPostgresInbox(b.db, middleware.InboxConfig{Table: name + "_inbox"})
	if err != nil {
		return err
	}
	if err := inbox.Setup(ctx); err != nil {
		return err
	}
	defer func() { _, _ = b.db.Exec(`DROP TABLE IF EXISTS "` + inbox.Table() + `"`) }()
	// A diagnostic, not the headline: the same inbox table through
	// connections with synchronous_commit off, which shows how much of the
	// cost is waiting for the commit's WAL flush. (A crash may then forget
	// the last inbox rows: duplicates become possible, no event is lost; not
	// for InTx handlers, whose writes would be forgotten too.)
	asyncDB, err := sql.Open("pgx", withParam(b.o.pgURL, "synchronous_commit=off"))
	if err != nil {
		return err
	}
	defer asyncDB.Close()
	asyncDB.SetMaxOpenConns(max(20, b.o.consumers+8))
	asyncInbox, err := middleware.NewPostgresInbox(asyncDB, middleware.InboxConfig{Table: name + "_inbox"})
	if err != nil {
		return err
	}

	// The same table again, through an inbox with group commit.
	groupInbox, err := middleware.NewPostgresInbox(b.db, middleware.InboxConfig{Table: name + "_inbox", GroupCommit: true})
	if err != nil {
		return err
	}

	k := b.o.consumers
	consumers := []consumer{
		{label: "stock: bare handler, 1 consumer, defaults (prefetch 1)", group: "stock1", parallel: 1, run: b.bareHandler(1)},
		{label: fmt.Sprintf("stock: bare handler, %d consumers, prefetch 100", k), group: "stockk", parallel: k, run: b.bareHandler(100)},
		{label: "eventkit: Default + PG inbox, 1 consumer, defaults", group: "ek1", parallel: 1, eventkit: true, run: b.eventkitHandler(inbox, "")},
		{label: fmt.Sprintf("eventkit: Default + PG inbox, %d consumers, prefetch 100", k), group: "ekk", parallel: k, eventkit: true,
			run: b.eventkitHandler(inbox, "?prefetch=100")},
		{label: fmt.Sprintf("eventkit: Default + PG inbox, GroupCommit, %d consumers, prefetch 100, concurrency 8", k), group: "ekgroup", parallel: k, eventkit: true,
			run: b.eventkitHandler(groupInbox, "?prefetch=100&concurrency=8")},
		{label: fmt.Sprintf("diagnostic: eventkit, %d consumers, inbox synchronous_commit=off", k), group: "ekasync", parallel: k, diagnostic: true,
			run: b.eventkitHandler(asyncInbox, "?prefetch=100")},
	}
	if err := r.ch.ExchangeDeclare(topic, "fanout", true, false, false, false, nil); err != nil {
		return err
	}
	var queues []string
	defer func() { b.deleteTopology("consume", queues, []string{topic}) }()
	for _, c := range consumers {
		q := topic + "_" + c.group
		queues = append(queues, q)
		if err := r.declare(q, nil); err != nil {
			return err
		}
		if err := r.ch.QueueBind(q, "", topic, false, nil); err != nil {
			return err
		}
	}
	pub := brokers.NewAMQP(b.o.amqpURL, true)
	defer pub.Close()

	n := b.o.events
	fmt.Printf("\n== consume: %d queued events handled from RabbitMQ, %d runs ==\n", n, b.o.runs)
	fmt.Printf("  (events/s from the first event handled to the last; every event counted by id)\n")
	results := map[string][]float64{}
	for run := 0; run < b.o.runs && ctx.Err() == nil; run++ {
		// Fresh events each round: the inbox would skip the previous ones.
		_, msgs, err := b.messages(n)
		if err != nil {
			return err
		}
		ids := make([]string, n)
		for i, m := range msgs {
			ids[i] = m.UUID
		}
		for i := 0; i < n; i += 1000 {
			if err := pub.Publish(topic, msgs[i:min(i+1000, n)]...); err != nil {
				return err
			}
		}
		for _, c := range consumers {
			eps, dups, err := b.consumeOnce(ctx, c, topic, ids)
			if err != nil {
				return err
			}
			results[c.label] = append(results[c.label], eps)
			fmt.Printf("  run %d  %-56s %8.0f events/s  consumer: 0 missing, %d duplicates\n", run+1, c.label, eps, dups)
		}
	}
	var bestStock, bestEK, diag float64
	fmt.Printf("  medians:\n")
	for _, c := range consumers {
		m := median(results[c.label])
		fmt.Printf("    %-56s %8.0f events/s\n", c.label, m)
		switch {
		case c.diagnostic:
			diag = max(diag, m)
		case c.eventkit:
			bestEK = max(bestEK, m)
		default:
			bestStock = max(bestStock, m)
		}
	}
	fmt.Printf("  best eventkit / best bare handler: %s (target ≥ 0.40×) %s\n", ratio(bestEK, bestStock), pass(bestEK >= 0.4*bestStock))
	b.record(result{Group: "consume", Label: "consume from RabbitMQ: Default + PG inbox vs bare", Eventkit: bestEK, Stock: bestStock, StockLabel: "bare",
		Unit: "events/s", HigherBetter: true, Target: "≥ 0.40×", Met: bestEK >= 0.4*bestStock})
	b.record(result{Group: "consume", Label: "consume, diagnostic: inbox with synchronous_commit=off", Eventkit: diag, Stock: bestStock, StockLabel: "bare",
		Unit: "events/s", HigherBetter: true})
	return nil
}

// consumeOnce runs c until every id was handled and returns its events/s
// and duplicate deliveries; a missing event is an error.
func (b *bench) consumeOnce(ctx context.Context, c consumer, topic string, ids []string) (eps float64, dups int, err error) {
	t := newTally(ids)
	var mu sync.Mutex
	var first, last time.Time
	all := make(chan struct{})
	var once sync.Once
	handled := func(id string) {
		t.add(id)
		now := time.Now()
		mu.Lock()
		if first.IsZero() {
			first = now
		}
		last = now
		mu.Unlock()
		if t.distinct() == len(ids) {
			once.Do(func() { close(all) })
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	running := make(chan struct{}, c.parallel)
	done := make(chan error, c.parallel)
	for range c.parallel {
		go func() { done <- c.run(rctx, topic, c.group, handled, running) }()
	}
	timeout := time.After(10 * time.Minute)
	ended := 0
	select {
	case <-all:
	case err := <-done:
		ended++
		if err != nil {
			cancel()
			for ; ended < c.parallel; ended++ {
				<-done
			}
			return 0, 0, fmt.Errorf("%s: %v", c.label, err)
		}
	case <-timeout:
	case <-ctx.Done():
	}
	// Late duplicates (redeliveries) would show within a moment.
	time.Sleep(100 * time.Millisecond)
	cancel()
	var runErr error
	for ; ended < c.parallel; ended++ {
		if err := <-done; err != nil && runErr == nil {
			runErr = err
		}
	}
	if runErr != nil {
		return 0, 0, fmt.Errorf("%s: %v", c.label, runErr)
	}
	dups, err = t.check(c.label)
	if err != nil {
		return 0, 0, err
	}
	mu.Lock()
	defer mu.Unlock()
	return float64(len(ids)-1) / last.Sub(first).Seconds(), dups, nil
}

// runRouter runs router until ctx ends, then closes it.
func runRouter(ctx context.Context, router *message.Router, running chan<- struct{}) error {
	errc := make(chan error, 1)
	go func() { errc <- router.Run(context.WithoutCancel(ctx)) }()
	select {
	case <-router.Running():
		running <- struct{}{}
	case err := <-errc:
		return err
	}
	<-ctx.Done()
	if err := router.Close(); err != nil {
		return err
	}
	return <-errc
}

// bareHandler is what a Watermill user writes without eventkit: a
// watermill-amqp durable pub/sub subscriber, a router with no middleware
// and a handler that decodes the JSON payload.
func (b *bench) bareHandler(prefetch int) func(ctx context.Context, topic, group string, handled func(string), running chan<- struct{}) error {
	return func(ctx context.Context, topic, group string, handled func(string), running chan<- struct{}) error {
		cfg := wmamqp.NewDurablePubSubConfig(b.o.amqpURL, wmamqp.GenerateQueueNameTopicNameWithSuffix(group))
		cfg.Consume.Qos.PrefetchCount = prefetch
		sub, err := wmamqp.NewSubscriber(cfg, watermill.NopLogger{})
		if err != nil {
			return err
		}
		defer sub.Close()
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		if err != nil {
			return err
		}
		router.AddConsumerHandler(group, topic, sub, func(msg *message.Message) error {
			var e BenchEvent
			if err := json.Unmarshal(msg.Payload, &e); err != nil {
				return err
			}
			handled(msg.UUID)
			return nil
		})
		return runRouter(ctx, router, running)
	}
}

// eventkitHandler is the eventkit wiring: transports.Open's subscriber, a
// typed handler added by cqrs.Processor, behind middleware.Default with a
// PostgreSQL inbox.
func (b *bench) eventkitHandler(inbox middleware.InboxStore, query string) func(ctx context.Context, topic, group string, handled func(string), running chan<- struct{}) error {
	return func(ctx context.Context, topic, group string, handled func(string), running chan<- struct{}) error {
		t, err := transports.Open(ctx, b.o.amqpURL+query)
		if err != nil {
			return err
		}
		defer t.Close()
		chain, err := middleware.Default(middleware.DefaultConfig{
			Publisher: t.Publisher(),
			Inbox:     inbox,
			Logger:    slog.New(slog.DiscardHandler),
		})
		if err != nil {
			return err
		}
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		if err != nil {
			return err
		}
		router.AddMiddleware(chain.Middlewares()...)
		proc, err := cqrs.NewProcessor(router, t.Subscriber, cqrs.ProcessorConfig{DeadLetter: t.Publisher(), Registry: b.reg, Topic: func(string) string { return topic }})
		if err != nil {
			return err
		}
		err = proc.AddHandlers(cqrs.NewHandler(group, func(ctx context.Context, _ *BenchEvent) error {
			env, _ := events.EnvelopeFromContext(ctx)
			handled(env.ID)
			return nil
		}))
		if err != nil {
			return err
		}
		return runRouter(ctx, router, running)
	}
}

// withParam adds a query parameter (key=value) to a URL.
func withParam(url, kv string) string {
	if strings.Contains(url, "?") {
		return url + "&" + kv
	}
	return url + "?" + kv
}
