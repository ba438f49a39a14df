package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/contracts"
	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

// schemaGroup is the consumer group (cqrs handler name) of the scenario.
const schemaGroup = "schema"

// schema measures what runtime schema validation (package contracts)
// costs, in process so that nothing else is measured: -events events
// published through a cqrs.Bus to a discarding publisher with and without
// BusConfig.Validate, and the same events handled by one typed cqrs handler
// behind middleware.Default (memory inbox) on the mem:// transport with and
// without the Validator's middleware. The variants alternate each round;
// every handled event is counted by id.
func (b *bench) schema(ctx context.Context) error {
	n := b.o.events
	v, err := contracts.NewValidator(b.reg, contracts.ValidatorConfig{})
	if err != nil {
		return err
	}
	evts := make([]any, n)
	for i := range evts {
		evts[i] = event(i + 1) // seqs 1..n, as countingDiscard counts them
	}
	fmt.Printf("\n== schema: runtime validation of %d events (%s), in process, %d runs ==\n", n, "bench.order_created", b.o.runs)
	fmt.Printf("  (publish: cqrs.Bus to a discarding publisher; consume: a typed handler behind Default + memory inbox on mem://)\n")
	pubOff, pubOn, conOff, conOn := []float64{}, []float64{}, []float64{}, []float64{}
	for run := 0; run < b.o.runs && ctx.Err() == nil; run++ {
		for _, validate := range []bool{false, true} {
			eps, err := b.schemaPublish(ctx, v, validate, evts)
			if err != nil {
				return err
			}
			ceps, err := b.schemaConsume(ctx, v, validate, n)
			if err != nil {
				return err
			}
			label := "validation off"
			if validate {
				label = "validation on"
				pubOn, conOn = append(pubOn, eps), append(conOn, ceps)
			} else {
				pubOff, conOff = append(pubOff, eps), append(conOff, ceps)
			}
			fmt.Printf("  run %d  %-15s publish %9.0f events/s (%5.2f µs/event)  consume %8.0f events/s (%5.2f µs/event)  0 missing, 0 duplicates\n",
				run+1, label, eps, 1e6/eps, ceps, 1e6/ceps)
		}
	}
	if len(pubOn) == 0 {
		return ctx.Err()
	}
	fmt.Printf("  medians: publish %0.f → %0.f events/s (on/off %s, +%.2f µs/event), consume %0.f → %0.f events/s (on/off %s, +%.2f µs/event)\n",
		median(pubOff), median(pubOn), ratio(median(pubOn), median(pubOff)), 1e6/median(pubOn)-1e6/median(pubOff),
		median(conOff), median(conOn), ratio(median(conOn), median(conOff)), 1e6/median(conOn)-1e6/median(conOff))
	b.record(result{Group: "schema", Label: "schema: publish with BusConfig.Validate",
		Eventkit: median(pubOn), EventkitLabel: "validation on", Stock: median(pubOff), StockLabel: "validation off", Unit: "events/s", HigherBetter: true})
	b.record(result{Group: "schema", Label: "schema: consume with Validator.Middleware",
		Eventkit: median(conOn), EventkitLabel: "validation on", Stock: median(conOff), StockLabel: "validation off", Unit: "events/s", HigherBetter: true})
	return nil
}

// schemaPublish publishes evts one at a time through a Bus to a
// discarding publisher, validating them if validate, and returns events/s.
func (b *bench) schemaPublish(ctx context.Context, v *contracts.Validator, validate bool, evts []any) (float64, error) {
	cfg := cqrs.BusConfig{Registry: b.reg, Source: "bench"}
	if validate {
		cfg.Validate = v.ValidateMessage
	}
	sink := newCountingDiscard(len(evts))
	bus, err := cqrs.NewBus(sink, cfg)
	if err != nil {
		return 0, err
	}
	began := time.Now()
	for _, e := range evts {
		if err := bus.Publish(ctx, e); err != nil {
			return 0, err
		}
	}
	eps := float64(len(evts)) / time.Since(began).Seconds()
	if missing := sink.missing(len(evts)); missing > 0 || sink.dups > 0 || sink.bad > 0 {
		return 0, fmt.Errorf("EVENTS LOST: schema publish: %d of %d events missing, %d published twice, %d unreadable", missing, len(evts), sink.dups, sink.bad)
	}
	return eps, nil
}

// schemaConsume publishes n events to a fresh mem:// transport, then
// handles them with one typed handler behind middleware.Default, with the
// Validator's middleware below it if validate, and returns events/s from
// the router running to the last event handled.
func (b *bench) schemaConsume(ctx context.Context, v *contracts.Validator, validate bool, n int) (float64, error) {
	_, msgs, err := b.messages(n)
	if err != nil {
		return 0, err
	}
	ids := make([]string, n)
	for i, m := range msgs {
		ids[i] = m.UUID
	}
	tr, err := transports.Open(ctx, "mem://")
	if err != nil {
		return 0, err
	}
	defer tr.Close()
	const topic = "bench.schema"
	if err := tr.Publisher().Publish(topic, msgs...); err != nil {
		return 0, err
	}
	inbox, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
	if err != nil {
		return 0, err
	}
	chain, err := middleware.Default(middleware.DefaultConfig{Publisher: tr.Publisher(), Inbox: inbox, Subscribers: tr.Subscriber,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return 0, err
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		return 0, err
	}
	router.AddMiddleware(chain.Middlewares()...)
	if validate {
		router.AddMiddleware(v.Middleware)
	}
	proc, err := cqrs.NewProcessor(router, tr.Subscriber, cqrs.ProcessorConfig{DeadLetter: tr.Publisher(), Registry: b.reg,
		Topic: func(string) string { return topic }})
	if err != nil {
		return 0, err
	}
	t := newTally(ids)
	done := make(chan struct{})
	err = proc.AddHandlers(cqrs.NewHandler(schemaGroup, func(ctx context.Context, _ *BenchEvent) error {
		env, _ := events.EnvelopeFromContext(ctx)
		t.add(env.ID)
		if t.distinct() == n {
			select {
			case <-done:
			default:
				close(done)
			}
		}
		return nil
	}))
	if err != nil {
		return 0, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	running := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() { errc <- runRouter(rctx, router, running) }()
	select {
	case <-running:
	case err := <-errc:
		return 0, err
	}
	began := time.Now()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
	case <-ctx.Done():
	}
	took := time.Since(began)
	cancel()
	if err := <-errc; err != nil {
		return 0, err
	}
	dups, err := t.check("schema consume")
	switch {
	case err != nil:
		return 0, err
	case dups > 0:
		return 0, fmt.Errorf("schema consume: %d events handled more than once (the inbox should have dropped them)", dups)
	}
	if chain.DeadLettered() > 0 {
		return 0, fmt.Errorf("schema consume: %d events dead-lettered", chain.DeadLettered())
	}
	return float64(n) / took.Seconds(), nil
}
