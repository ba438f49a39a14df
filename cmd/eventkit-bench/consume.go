package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/b2131a45/eventkit/cmd/eventkit-bench/internal/brokers"
	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
	transportsamqp "github.com/b2131a45/eventkit/transports/amqp"
)

// consumer is one way of handling the events of a RabbitMQ queue.
type consumer struct {
	label    string
	eventkit bool
	group    string // the queue is topic + "_" + group
	parallel int    // competing consumers of the queue (replicas), each one router
	// diagnostic variants are printed but are in neither best figure.
	diagnostic bool
	kind       inboxKind // which best figure an eventkit variant counts towards
	// run subscribes to topic as group and handles every event with
	// handled(eventID) until ctx ends.
	run func(ctx context.Context, topic, group string, handled func(id string), running chan<- struct{}) error
}

// consume measures handler throughput on RabbitMQ: the same -events
// events, already queued, handled by a bare Watermill handler on
// watermill-amqp (its defaults, and a prefetch of 100) and by an eventkit
// typed handler behind middleware.Default with each PostgreSQL inbox mode
// on the transports package's AMQP subscriber: the per-message inbox
// (database/sql with the pgx driver, and NewPostgresInboxPool, each also
// with 4 messages in flight per consumer), the same in InTx mode, GroupTx
// (InTx, savepoints in shared transactions) and GroupCommit with 32 in
// flight. Every consumer gets its own queue, filled with the round's events
// just before it runs, on an empty inbox table, once RabbitMQ and
// PostgreSQL are quiet; the variants run one after the other, in the same
// order each round, and each is reported with its ratio to the best bare
// handler of the same round (the median of those ratios).
func (b *bench) consume(ctx context.Context) error {
	r, err := dialRabbit(b.o.amqpURL)
	if err != nil {
		return err
	}
	defer r.close()
	name := b.name("consume")
	topic := "bench.consume." + name
	k := b.o.consumers
	// Messages in flight per consumer: 4 for a transaction per message (2,
	// 4, 6 and 8 measured: 4.8k–5.6k, 6.2k–7.1k, 5.8k–6.1k/s, 8 no better);
	// 32 for the group modes, whose groups are as large as the claims in
	// flight (8 against 32, same rounds: GroupCommit 0.80–0.90 against
	// 0.92–0.97 of the bare handler, GroupTx 0.49–0.51 against 0.55–0.59).
	const inFlight, groupInFlight = 4, 32
	conns := max(20, k*inFlight+8)
	if b.o.inboxConns > 0 {
		conns = b.o.inboxConns
	}
	// The inboxes' own connections: up to k×4 claims in flight.
	db, err := sql.Open("pgx", b.o.pgURL)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	pool, err := pgxpool.New(ctx, withParam(b.o.pgURL, fmt.Sprintf("pool_max_conns=%d", conns)))
	if err != nil {
		return err
	}
	defer pool.Close()
	table := name + "_inbox"
	inbox, err := middleware.NewPostgresInbox(db, middleware.InboxConfig{Table: table})
	if err != nil {
		return err
	}
	if err := inbox.Setup(ctx); err != nil {
		return err
	}
	defer func() { _, _ = b.db.Exec(`DROP TABLE IF EXISTS "` + inbox.Table() + `"`) }()
	// The same table through the other modes (each consumer has its own
	// handler name, so its keys are its own).
	poolInbox, err := middleware.NewPostgresInboxPool(pool, middleware.InboxConfig{Table: table})
	if err != nil {
		return err
	}
	defer poolInbox.Close()
	groupTxInbox, err := middleware.NewPostgresInboxPool(pool, middleware.InboxConfig{Table: table, GroupTx: true})
	if err != nil {
		return err
	}
	defer groupTxInbox.Close()
	groupInbox, err := middleware.NewPostgresInbox(db, middleware.InboxConfig{Table: table, GroupCommit: true})
	if err != nil {
		return err
	}
	// A diagnostic, not the headline: the per-message inbox through
	// connections with synchronous_commit off, which shows how much of the
	// cost is waiting for the commit's WAL flush. (A crash may then forget
	// the last inbox rows: duplicates become possible, no event is lost; not
	// for InTx handlers, whose writes would be forgotten too.)
	asyncDB, err := sql.Open("pgx", withParam(b.o.pgURL, "synchronous_commit=off"))
	if err != nil {
		return err
	}
	defer asyncDB.Close()
	asyncDB.SetMaxOpenConns(conns)
	asyncInbox, err := middleware.NewPostgresInbox(asyncDB, middleware.InboxConfig{Table: table})
	if err != nil {
		return err
	}

	many := fmt.Sprintf("%d consumers, prefetch 100", k)
	conc := fmt.Sprintf("%s, concurrency %d", many, inFlight)
	gconc := fmt.Sprintf("%s, concurrency %d", many, groupInFlight)
	consumers := []consumer{
		{label: "stock: bare handler, 1 consumer, defaults (prefetch 1)", group: "stock1", parallel: 1, run: b.bareHandler(1)},
		{label: "stock: bare handler, " + many, group: "stockk", parallel: k, run: b.bareHandler(100)},
		{label: "per-message inbox, 1 consumer, defaults", group: "ek1", parallel: 1, eventkit: true, kind: perMessage,
			run: b.eventkitHandler(inbox, false, "")},
		{label: "per-message inbox, " + many, group: "ekk", parallel: k, eventkit: true, kind: perMessage,
			run: b.eventkitHandler(inbox, false, "?prefetch=100")},
		{label: "per-message inbox, " + conc, group: "ekconc", parallel: k, eventkit: true, kind: perMessage,
			run: b.eventkitHandler(inbox, false, fmt.Sprintf("?prefetch=100&concurrency=%d", inFlight))},
		{label: "per-message inbox on a pgx pool, " + many, group: "ekpool", parallel: k, eventkit: true, kind: perMessage,
			run: b.eventkitHandler(poolInbox, false, "?prefetch=100")},
		{label: "per-message inbox on a pgx pool, " + conc, group: "ekpoolconc", parallel: k, eventkit: true, kind: perMessage,
			run: b.eventkitHandler(poolInbox, false, fmt.Sprintf("?prefetch=100&concurrency=%d", inFlight))},
		{label: "InTx, per-message inbox, " + conc, group: "ekintx", parallel: k, eventkit: true, kind: inTx,
			run: b.eventkitHandler(inbox, true, fmt.Sprintf("?prefetch=100&concurrency=%d", inFlight))},
		{label: "InTx, per-message inbox on a pgx pool, " + conc, group: "ekpoolintx", parallel: k, eventkit: true, kind: inTx,
			run: b.eventkitHandler(poolInbox, true, fmt.Sprintf("?prefetch=100&concurrency=%d", inFlight))},
		{label: "InTx, GroupTx inbox on a pgx pool, " + gconc, group: "ekgrouptx", parallel: k, eventkit: true, kind: inTx,
			run: b.eventkitHandler(groupTxInbox, true, fmt.Sprintf("?prefetch=100&concurrency=%d", groupInFlight))},
		{label: "GroupCommit inbox, " + gconc, group: "ekgroup", parallel: k, eventkit: true, kind: groupCommit,
			run: b.eventkitHandler(groupInbox, false, fmt.Sprintf("?prefetch=100&concurrency=%d", groupInFlight))},
		{label: "diagnostic: per-message inbox, synchronous_commit=off, " + many, group: "ekasync", parallel: k, diagnostic: true,
			run: b.eventkitHandler(asyncInbox, false, "?prefetch=100")},
	}
	consumers, err = b.selectVariants(consumers)
	if err != nil {
		return err
	}
	if err := r.ch.ExchangeDeclare(topic, "fanout", true, false, false, false, nil); err != nil {
		return err
	}
	var queues []string
	defer func() { b.deleteTopology("consume", queues, []string{topic}) }()
	for _, c := range consumers {
		q := topic + "_" + c.group
		queues = append(queues, q)
		// A handler that failed (a claim that timed out, say) leaves its
		// message in the chain's delay queues, declared on first use.
		for _, d := range middleware.DelayedRetryLevelsDefault {
			queues = append(queues, transportsamqp.DelayQueueName(topic, c.group, d))
		}
		if err := r.declare(q, nil); err != nil {
			return err
		}
		if err := r.ch.QueueBind(q, "", topic, false, nil); err != nil {
			return err
		}
	}
	// Each variant's events go to its own queue (the default exchange) just
	// before it runs, and it starts once RabbitMQ and PostgreSQL are quiet:
	// every variant starts on the same broker, one queue of -events
	// messages and nothing else to do, and on an empty inbox table.
	// (Published to the topic's exchange once a round, every queue got
	// them at once, and the variants that ran first shared RabbitMQ with
	// its work on the others' backlog: the bare handler, second in every
	// round, varied 17k–33k/s.)
	pub := brokers.NewAMQP(b.o.amqpURL, false)
	defer pub.Close()

	n := b.o.events
	fmt.Printf("\n== consume: %d queued events handled from RabbitMQ, %d runs ==\n", n, b.o.runs)
	fmt.Printf("  (events/s from the first event handled to the last; every event counted by id;\n")
	fmt.Printf("   eventkit variants: Default chain, typed handler; ratio: to the best bare handler of the same round)\n")
	results := map[string][]float64{}
	ratios := map[string][]float64{}
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
		round := map[string]float64{}
		bare := 0.0
		for _, c := range consumers {
			// Every variant starts on an empty inbox table: shared by all
			// of them, it would otherwise grow by -events rows a variant
			// (240,000 a round), and the later variants and rounds would
			// pay for its size and its autovacuums.
			if _, err := b.db.ExecContext(ctx, `TRUNCATE "`+inbox.Table()+`"`); err != nil {
				return err
			}
			b.checkpoint(ctx)
			for i := 0; i < n; i += 1000 {
				if err := pub.Publish(topic+"_"+c.group, msgs[i:min(i+1000, n)]...); err != nil {
					return err
				}
			}
			settle(b.rabbit, b.postgres)
			span := cpuSpan(b.rabbit, b.postgres)
			cpu0 := processCPU()
			eps, dups, err := b.consumeOnce(ctx, c, topic, ids)
			if err != nil {
				return err
			}
			self := (processCPU() - cpu0) / time.Duration(n)
			srv := span(n)
			results[c.label] = append(results[c.label], eps)
			round[c.label] = eps
			if !c.eventkit && !c.diagnostic {
				bare = max(bare, eps)
			}
			fmt.Printf("  run %d  %-72s %8.0f events/s  0 missing, %d duplicates; CPU/event: bench %s, RabbitMQ %s, PostgreSQL %s\n",
				run+1, c.label, eps, dups, perEvent(self), perEvent(srv[0]), perEvent(srv[1]))
		}
		for label, eps := range round {
			ratios[label] = append(ratios[label], eps/bare)
		}
	}
	fmt.Printf("  medians:\n")
	var bestStock float64
	for _, c := range consumers {
		if !c.eventkit && !c.diagnostic {
			bestStock = max(bestStock, median(results[c.label]))
		}
	}
	ran := map[inboxKind]bool{}
	for _, c := range consumers {
		if c.eventkit {
			ran[c.kind] = true
		}
	}
	best := map[inboxKind]float64{}
	bestRatio := map[inboxKind]float64{}
	for _, c := range consumers {
		m, q := median(results[c.label]), median(ratios[c.label])
		fmt.Printf("    %-72s %8.0f events/s  %.2f of bare\n", c.label, m, q)
		if c.eventkit {
			if q > bestRatio[c.kind] {
				best[c.kind], bestRatio[c.kind] = m, q
			}
			b.record(result{Group: "consume", Label: "consume: " + c.label, Eventkit: m, Stock: bestStock, StockLabel: "bare",
				Unit: "events/s", HigherBetter: true})
		}
		if c.diagnostic {
			b.record(result{Group: "consume", Label: "consume, " + c.label, Eventkit: m, Stock: bestStock, StockLabel: "bare",
				Unit: "events/s", HigherBetter: true})
		}
	}
	for _, t := range []struct {
		kind   inboxKind
		what   string
		target float64
	}{{perMessage, "best per-message inbox", 0.30}, {inTx, "best InTx inbox", 0.30}, {groupCommit, "GroupCommit inbox", 0.60}} {
		if !ran[t.kind] {
			continue // -variants left them out
		}
		q := bestRatio[t.kind]
		fmt.Printf("  %s / best bare handler, same rounds: %.2f (target ≥ %.2f) %s\n", t.what, q, t.target, pass(q >= t.target))
		b.record(result{Group: "consume", Label: "consume from RabbitMQ, " + t.what + " vs bare (median of same-round ratios)",
			Eventkit: best[t.kind], Stock: best[t.kind] / max(q, 1e-9), StockLabel: "bare",
			Unit: "events/s", HigherBetter: true, Target: fmt.Sprintf("≥ %.2f×", t.target), Met: q >= t.target})
	}
	return nil
}

// selectVariants keeps the bare handlers and the eventkit variants whose
// group -variants names (all of them when it is empty); a name that is no
// variant's group is an error.
func (b *bench) selectVariants(all []consumer) ([]consumer, error) {
	if len(b.o.variants) == 0 {
		return all, nil
	}
	want := map[string]bool{}
	for _, v := range b.o.variants {
		want[strings.TrimSpace(v)] = true
	}
	var kept []consumer
	for _, c := range all {
		if want[c.group] {
			delete(want, c.group)
			kept = append(kept, c)
		} else if !c.eventkit && !c.diagnostic {
			kept = append(kept, c)
		}
	}
	if len(want) > 0 {
		var groups []string
		for _, c := range all {
			if c.eventkit || c.diagnostic {
				groups = append(groups, c.group)
			}
		}
		var unknown []string
		for v := range want {
			unknown = append(unknown, v)
		}
		sort.Strings(unknown)
		return nil, fmt.Errorf("-variants: no consume variant %s (they are %s)", strings.Join(unknown, ", "), strings.Join(groups, ", "))
	}
	return kept, nil
}

// inboxKind is what a consume variant's figure counts towards.
type inboxKind int

const (
	perMessage inboxKind = iota
	inTx
	groupCommit
)

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
		// Labelled for -cpuprofile: the goroutines a variant starts (its
		// connections' readers too) inherit the label.
		go pprof.Do(rctx, pprof.Labels("variant", c.group), func(rctx context.Context) {
			done <- c.run(rctx, topic, c.group, handled, running)
		})
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
func (b *bench) eventkitHandler(inbox middleware.InboxStore, inTx bool, query string) func(ctx context.Context, topic, group string, handled func(string), running chan<- struct{}) error {
	return func(ctx context.Context, topic, group string, handled func(string), running chan<- struct{}) error {
		t, err := transports.Open(ctx, b.o.amqpURL+query)
		if err != nil {
			return err
		}
		defer t.Close()
		chain, err := middleware.Default(middleware.DefaultConfig{
			Publisher: t.Publisher(),
			Inbox:     inbox,
			InTx:      inTx,
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
