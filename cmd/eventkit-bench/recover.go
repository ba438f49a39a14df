package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/cmd/eventkit-bench/internal/brokers"
	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
	ekamqp "github.com/b2131a45/eventkit/transports/amqp"
)

// recoverDelay is the one level of the delayed variant.
const recoverDelay = time.Second

// recoverGroup is the consumer group (cqrs handler name) of the scenario.
const recoverGroup = "recover"

// errFirstAttempt is what a failing event's first attempt returns.
var errFirstAttempt = errors.New("bench: the first attempt of every tenth event fails")

// recoverVariant is one way of recovering from a handler's failure: the two
// stages of middleware.Default.
type recoverVariant struct {
	label   string
	delayed bool // the failing events go through the delay queue
	retry   middleware.RetryConfig
	delay   middleware.DelayedRetryConfig
}

// recoverRun is what one run of a variant measured.
type recoverRun struct {
	eps     float64       // the nine in ten, events/s from the first publish to the last of them handled
	all     time.Duration // from the first publish to the last event handled, the failing ones included
	retried int64         // Retry.Retries or DelayedRetry.Delayed
}

// recovery measures what a failing event costs the others on RabbitMQ: one
// consumer (the transport's defaults: prefetch 1, concurrency 1) behind
// middleware.Default with a memory inbox, -recover-events events of which
// every tenth fails its first attempt. With in-process retry the backoff is
// slept holding the message, and the queue waits; with delayed retry the
// failing event goes to a delay queue and the consumer goes on. The
// variants alternate in each round, on the same topic and group; every
// queue and exchange is deleted at the end.
func (b *bench) recovery(ctx context.Context) error {
	n := b.o.recoverEvents
	if n < 2 {
		return fmt.Errorf("-recover-events %d: want at least 2 (one in ten fails)", n)
	}
	variants := []recoverVariant{
		{label: "in-process retry (Retry 5 attempts from 100 ms)",
			retry: middleware.RetryConfig{MaxAttempts: 5, InitialInterval: 100 * time.Millisecond},
			delay: middleware.DelayedRetryConfig{Disabled: true}},
		{label: fmt.Sprintf("delayed retry (no immediate retry, %v delay queue)", recoverDelay), delayed: true,
			retry: middleware.RetryConfig{MaxAttempts: 1},
			delay: middleware.DelayedRetryConfig{Levels: []time.Duration{recoverDelay}}},
	}
	r, err := dialRabbit(b.o.amqpURL)
	if err != nil {
		return err
	}
	defer r.close()
	topic := "bench.recover." + b.name("recover")
	defer b.deleteRecoverTopology(topic)
	queue := ekamqp.QueueName(topic, recoverGroup)
	if err := r.ch.ExchangeDeclare(topic, "fanout", true, false, false, false, nil); err != nil {
		return err
	}
	if err := r.declare(queue, nil); err != nil {
		return err
	}
	if err := r.ch.QueueBind(queue, "", topic, false, nil); err != nil {
		return err
	}
	pub := brokers.NewAMQP(b.o.amqpURL, true)
	defer pub.Close()

	fmt.Printf("\n== recover: %d events, every tenth fails its first attempt, 1 consumer on RabbitMQ (prefetch 1), Default + memory inbox, %d runs ==\n", n, b.o.runs)
	fmt.Printf("  (events/s of the nine in ten, from the first publish to the last of them handled; every event counted by id)\n")
	eps, all := map[string][]float64{}, map[string][]float64{}
	for run := 0; run < b.o.runs && ctx.Err() == nil; run++ {
		for _, v := range variants {
			res, err := b.recoverOnce(ctx, v, pub, topic, n)
			if err != nil {
				return err
			}
			eps[v.label] = append(eps[v.label], res.eps)
			all[v.label] = append(all[v.label], res.all.Seconds())
			what := "retries"
			if v.delayed {
				what = "delayed"
			}
			fmt.Printf("  run %d  %-54s %8.0f events/s  all %d handled in %6.2f s  (%d %s)  consumer: 0 missing, 0 duplicates\n",
				run+1, v.label, res.eps, n, res.all.Seconds(), res.retried, what)
		}
	}
	fmt.Printf("  medians:\n")
	for _, v := range variants {
		fmt.Printf("    %-54s %8.0f events/s  all handled in %6.2f s\n", v.label, median(eps[v.label]), median(all[v.label]))
	}
	inProcess, delayed := median(eps[variants[0].label]), median(eps[variants[1].label])
	fmt.Printf("  delayed / in-process retry, the nine in ten: %s\n", ratio(delayed, inProcess))
	b.record(result{Group: "recover", Label: "recover: the 9 in 10 while 1 in 10 fails once",
		Eventkit: delayed, EventkitLabel: "delayed retry", Stock: inProcess, StockLabel: "in-process retry", Unit: "events/s", HigherBetter: true})
	return nil
}

// recoverOnce publishes n fresh events to topic while one consumer of v
// handles them, and returns once all were handled (or a deadline passed).
// A missing event, a duplicate handling, a dead letter or a failing event
// that did not go through v's retry stage is an error.
func (b *bench) recoverOnce(ctx context.Context, v recoverVariant, pub message.Publisher, topic string, n int) (recoverRun, error) {
	_, msgs, err := b.messages(n)
	if err != nil {
		return recoverRun{}, err
	}
	ids, others := make([]string, n), make([]string, 0, n)
	failing := 0
	for i, m := range msgs {
		ids[i] = m.UUID
		if i%10 == 0 { // event(i).Seq is i
			failing++
		} else {
			others = append(others, m.UUID)
		}
	}
	t, rest := newTally(ids), newTally(others)
	var mu sync.Mutex
	var began, lastOther, last time.Time
	othersDone, allDone := make(chan struct{}), make(chan struct{})
	var othersOnce, allOnce sync.Once
	handled := func(id string, fails bool) {
		now := time.Now()
		t.add(id)
		mu.Lock()
		last = now
		if !fails {
			lastOther = now
		}
		mu.Unlock()
		if !fails {
			rest.add(id)
			if rest.distinct() == len(others) {
				othersOnce.Do(func() { close(othersDone) })
			}
		}
		if t.distinct() == n {
			allOnce.Do(func() { close(allDone) })
		}
	}

	tr, err := transports.Open(ctx, b.o.amqpURL)
	if err != nil {
		return recoverRun{}, err
	}
	defer tr.Close()
	chain, err := b.recoverRouter(ctx, v, tr, topic, handled)
	if err != nil {
		return recoverRun{}, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	running := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- runRouter(rctx, chain.router, running) }()
	select {
	case <-running:
	case err := <-done:
		return recoverRun{}, fmt.Errorf("%s: %v", v.label, err)
	}

	mu.Lock()
	began = time.Now()
	mu.Unlock()
	for i := 0; i < n; i += 1000 {
		if err := pub.Publish(topic, msgs[i:min(i+1000, n)]...); err != nil {
			return recoverRun{}, err
		}
	}
	// At most about 120 ms held per failing event in process, plenty of
	// margin; a missing event is reported by the tally below.
	timeout := time.After(2*time.Minute + time.Duration(n)*20*time.Millisecond)
	var runErr error
	select {
	case <-allDone:
	case runErr = <-done:
	case <-timeout:
	case <-ctx.Done():
	}
	// Late duplicates (redeliveries) would show within a moment.
	time.Sleep(100 * time.Millisecond)
	cancel()
	if runErr == nil {
		runErr = <-done
	}
	if runErr != nil {
		return recoverRun{}, fmt.Errorf("%s: %v", v.label, runErr)
	}
	dups, err := t.check(v.label)
	if err != nil {
		return recoverRun{}, err
	}
	if dups > 0 {
		return recoverRun{}, fmt.Errorf("%s: %d events handled more than once (the inbox should have dropped them)", v.label, dups)
	}
	retried := chain.Retry.Retries()
	if v.delayed {
		retried = chain.DelayedRetry.Delayed()
	}
	switch {
	case chain.DeadLettered() > 0:
		return recoverRun{}, fmt.Errorf("%s: %d events dead-lettered", v.label, chain.DeadLettered())
	case retried != int64(failing):
		return recoverRun{}, fmt.Errorf("%s: %d of the %d failing events went through the retry stage", v.label, retried, failing)
	}
	<-othersDone // closed: every event was handled
	mu.Lock()
	defer mu.Unlock()
	return recoverRun{eps: float64(len(others)) / lastOther.Sub(began).Seconds(), all: last.Sub(began), retried: retried}, nil
}

// recoverChain is a router ready to run and the chain behind its handler.
type recoverChain struct {
	*middleware.Chain
	router *message.Router
}

// recoverRouter wires one consumer of topic as the scenario's group: the
// transport's subscriber, a typed cqrs handler behind middleware.Default
// with v's retry stages and a memory inbox. The handler fails the first
// attempt of every tenth event and calls handled on every success.
func (b *bench) recoverRouter(ctx context.Context, v recoverVariant, tr *transports.Transport, topic string, handled func(id string, fails bool)) (recoverChain, error) {
	inbox, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
	if err != nil {
		return recoverChain{}, err
	}
	chain, err := middleware.Default(middleware.DefaultConfig{
		Publisher:    tr.Publisher(),
		Inbox:        inbox,
		Subscribers:  tr.Subscriber,
		Retry:        v.retry,
		DelayedRetry: v.delay,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return recoverChain{}, err
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		return recoverChain{}, err
	}
	router.AddMiddleware(chain.Middlewares()...)
	proc, err := cqrs.NewProcessor(router, tr.Subscriber, cqrs.ProcessorConfig{DeadLetter: tr.Publisher(), Registry: b.reg,
		Topic: func(string) string { return topic }})
	if err != nil {
		return recoverChain{}, err
	}
	var failed sync.Map // ids of the events whose first attempt failed
	err = proc.AddHandlers(cqrs.NewHandler(recoverGroup, func(ctx context.Context, e *BenchEvent) error {
		env, _ := events.EnvelopeFromContext(ctx)
		fails := e.Seq%10 == 0
		if fails {
			if _, again := failed.LoadOrStore(env.ID, true); !again {
				return errFirstAttempt
			}
		}
		handled(env.ID, fails)
		return nil
	}))
	if err != nil {
		return recoverChain{}, err
	}
	return recoverChain{Chain: chain, router: router}, nil
}

// deleteRecoverTopology deletes every queue and exchange the scenario
// declared or may have made the transport declare: the group's queue, its
// delay queue, the dead-letter queue and exchange (declared before a first
// dead letter), and the topic's exchange.
func (b *bench) deleteRecoverTopology(topic string) {
	dlq := middleware.DeadLetterTopic(topic)
	b.deleteTopology("recover", []string{
		ekamqp.QueueName(topic, recoverGroup),
		ekamqp.DelayQueueName(topic, recoverGroup, recoverDelay),
		ekamqp.QueueName(dlq, middleware.DeadLetterGroupDefault),
	}, []string{dlq, topic})
}
