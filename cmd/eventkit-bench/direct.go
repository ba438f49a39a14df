package main

import (
	"context"
	"fmt"
	"runtime/pprof"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/cmd/eventkit-bench/internal/brokers"
	"github.com/b2131a45/eventkit/cqrs"
)

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
	settle(b.rabbit, b.postgres) // as before a drain
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("drain", "raw")))
	defer pprof.SetGoroutineLabels(context.Background())
	began := time.Now()
	cpu0 := processCPU()
	servers := cpuSpan(b.rabbit)
	for i := 0; i < n; i += 1000 {
		if err := pub.Publish(bt.name, msgs[i:min(i+1000, n)]...); err != nil {
			return 0, 0, err
		}
	}
	elapsed := time.Since(began)
	b.cpuPerEvent = (processCPU() - cpu0) / time.Duration(n)
	b.brokerCPU, b.dbCPU = servers(n)[0], -1
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
	var raw, cpu []float64
	var brokerCPU []time.Duration
	for run := 0; run < b.o.runs && ctx.Err() == nil; run++ {
		eps, dups, err := b.rawAMQP(bt, n)
		if err != nil {
			return err
		}
		raw = append(raw, eps)
		cpu = append(cpu, float64(b.cpuPerEvent.Microseconds()))
		brokerCPU = append(brokerCPU, b.brokerCPU)
		fmt.Printf("  run %d  %8.0f events/s  %4d µs CPU/event (RabbitMQ %s)  consumer: 0 missing, %d duplicates\n",
			run+1, eps, b.cpuPerEvent.Microseconds(), perEvent(b.brokerCPU), dups)
	}
	fmt.Printf("  median %8.0f events/s  %4.0f µs CPU/event (RabbitMQ %s)\n", median(raw), median(cpu), perEvent(medianDuration(brokerCPU)))
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

func (discard) Close() error { return nil }
