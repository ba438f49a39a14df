package main

import (
	"context"
	"fmt"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/b2131a45/eventkit/forwarder"
)

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
	settle(b.rabbit, b.postgres) // the fill's writes, the last run's queue
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
	cpu0 := processCPU()
	servers := cpuSpan(b.rabbit, b.postgres)
	defer func() {
		b.cpuPerEvent = (processCPU() - cpu0) / time.Duration(n)
		s := servers(n)
		b.brokerCPU, b.dbCPU = s[0], s[1]
	}()
	// Labelled, so that a CPU profile tells the drainers apart
	// (-tagfocus='drain=^eventkit relay').
	ctx = pprof.WithLabels(ctx, pprof.Labels("drain", d.label))
	pprof.SetGoroutineLabels(ctx)
	defer pprof.SetGoroutineLabels(context.Background())
	d.published.Store(0)
	stop, err := d.start(ctx, ob)
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	deadline := time.Now().Add(10 * time.Minute)
	// The database is asked every millisecond once every event was
	// published, until the last marks are in; before, every 100 ms only
	// (for events that never count: parked rows, a publisher whose calls
	// fail in part).
	var ask time.Time
	for {
		if d.published.Load() >= int64(n) || !time.Now().Before(ask) {
			ask = time.Now().Add(100 * time.Millisecond)
			ok, err := d.done(ctx, ob)
			if err != nil {
				return 0, 0, err
			}
			if ok {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, 0, fmt.Errorf("%s did not drain in time", d.label)
		}
		time.Sleep(time.Millisecond)
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

// amqpDrain drains outboxes to RabbitMQ -runs times: each round the raw
// ceiling, eventkit's relay (marking, then deleting), the ceiling again,
// then the stock forwarders (unless onlyEventkit).
func (b *bench) amqpDrain(ctx context.Context, onlyEventkit bool) error {
	bt, closeTopic, err := b.amqpTopic("bench.amqp")
	if err != nil {
		return err
	}
	defer closeTopic()

	drainers := []drainer{
		b.eventkitDrainer("eventkit relay (pipelined confirms)", b.eventkitAMQP()),
		b.eventkitDrainerWith("eventkit relay, DeletePublished", b.eventkitAMQP(), true),
		b.stockDrainer("stock, confirms, ChannelPoolSize 1", b.stockAMQP(true, 1)),
		b.stockDrainer("stock, confirms, default pool", b.stockAMQP(true, 0)),
		b.stockDrainer("stock, no confirms, ChannelPoolSize 1", b.stockAMQP(false, 1)),
		b.stockDrainer("stock, no confirms, default pool", b.stockAMQP(false, 0)),
	}
	if onlyEventkit {
		drainers = drainers[:2]
	}
	results, inBroker, cpu := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	brokerCPU, dbCPU := map[string][]time.Duration{}, map[string][]time.Duration{}
	var raw, ratios, deleteRatios []float64
	n := b.o.events
	fmt.Printf("\n== PostgreSQL outbox → RabbitMQ, %d events, %d runs, eventkit publisher: %s ==\n", n, b.o.runs, b.o.publisher)
	fmt.Printf("  (events/s until every row is marked, or acked by the stock forwarder; and until the queue holds every event)\n")
	drain := func(run int, d drainer) error {
		eps, epsb, dups, err := b.drainOnce(ctx, d, bt, n)
		if err != nil {
			return err
		}
		results[d.label] = append(results[d.label], eps)
		inBroker[d.label] = append(inBroker[d.label], epsb)
		cpu[d.label] = append(cpu[d.label], float64(b.cpuPerEvent.Microseconds()))
		brokerCPU[d.label] = append(brokerCPU[d.label], b.brokerCPU)
		dbCPU[d.label] = append(dbCPU[d.label], b.dbCPU)
		fmt.Printf("  run %d  %-42s %8.0f events/s  (in broker: %8.0f)  %4d µs CPU/event  (RabbitMQ %s, PostgreSQL %s)  consumer: 0 missing, %d duplicates\n",
			run+1, d.label, eps, epsb, b.cpuPerEvent.Microseconds(), perEvent(b.brokerCPU), perEvent(b.dbCPU), dups)
		return nil
	}
	ceiling := func(run int, when string) (float64, error) {
		eps, dups, err := b.rawAMQP(bt, n)
		if err != nil {
			return 0, err
		}
		cpu["raw"] = append(cpu["raw"], float64(b.cpuPerEvent.Microseconds()))
		brokerCPU["raw"] = append(brokerCPU["raw"], b.brokerCPU)
		fmt.Printf("  run %d  %-42s %8.0f events/s  %-24s %4d µs CPU/event  (RabbitMQ %s)  consumer: 0 missing, %d duplicates\n",
			run+1, "raw pipelined confirms (ceiling, "+when+")", eps, "", b.cpuPerEvent.Microseconds(), perEvent(b.brokerCPU), dups)
		return eps, nil
	}
	for run := 0; run < b.o.runs; run++ {
		// The ceiling is measured right before and right after the two
		// eventkit drains, and the round's ceiling is the mean of the
		// two: the ratio compares runs seconds apart (the stock drains,
		// a minute in all, come after), and a drift of the machine
		// within those seconds weighs on both sides alike.
		before, err := ceiling(run, "before")
		if err != nil {
			return err
		}
		for _, d := range drainers[:2] {
			if err := drain(run, d); err != nil {
				return err
			}
		}
		after, err := ceiling(run, "after")
		if err != nil {
			return err
		}
		eps := (before + after) / 2
		raw = append(raw, eps)
		ratios = append(ratios, results[drainers[0].label][run]/eps)
		deleteRatios = append(deleteRatios, results[drainers[1].label][run]/eps)
		fmt.Printf("  run %d  eventkit / ceiling (the mean of %.0f and %.0f): %.2f, with DeletePublished %.2f\n",
			run+1, before, after, ratios[run], deleteRatios[run])
		for _, d := range drainers[2:] {
			if err := drain(run, d); err != nil {
				return err
			}
		}
	}
	ek := median(results[drainers[0].label])
	ceil := median(raw)
	fmt.Printf("  medians:\n")
	for _, d := range drainers {
		fmt.Printf("    %-42s %8.0f events/s  (in broker: %8.0f)  %4.0f µs CPU/event  (RabbitMQ %s, PostgreSQL %s)\n", d.label, median(results[d.label]), median(inBroker[d.label]), median(cpu[d.label]),
			perEvent(medianDuration(brokerCPU[d.label])), perEvent(medianDuration(dbCPU[d.label])))
	}
	fmt.Printf("    %-42s %8.0f events/s  %-24s %4.0f µs CPU/event  (RabbitMQ %s)\n", "raw pipelined confirms (ceiling)", ceil, "", median(cpu["raw"]), perEvent(medianDuration(brokerCPU["raw"])))
	fmt.Printf("  (CPU/event: this process's user+system CPU over the run, relay or publisher and the bench's polling, per event;\n")
	fmt.Printf("   RabbitMQ's and PostgreSQL's: their server processes' CPU over the same span, read from /proc, n/a when not local)\n")
	fmt.Printf("  eventkit / raw pipelined confirms, median of the same-round ratios: %.2f (target ≥ 0.90) %s\n", median(ratios), pass(median(ratios) >= 0.9))
	fmt.Printf("  eventkit with DeletePublished / raw pipelined confirms, same-round ratios: %.2f (target ≥ 0.90) %s\n", median(deleteRatios), pass(median(deleteRatios) >= 0.9))
	ekDelete := median(results[drainers[1].label])
	b.record(result{Group: "drain", Label: "drain → RabbitMQ, DeletePublished, vs direct publish", Eventkit: ekDelete, Stock: ceil, StockLabel: "direct", Unit: "events/s", HigherBetter: true,
		SameRound: median(deleteRatios), Target: "≥ 0.90×", Met: median(deleteRatios) >= 0.9})
	if onlyEventkit {
		fmt.Printf("  eventkit / raw pipelined confirms: %s\n", ratio(ek, ceil))
		return nil
	}
	bestConfirm := max(median(results[drainers[2].label]), median(results[drainers[3].label]))
	bestNoConfirm := max(median(results[drainers[4].label]), median(results[drainers[5].label]))
	bestNoConfirmB := max(median(inBroker[drainers[4].label]), median(inBroker[drainers[5].label]))
	fmt.Printf("  eventkit / best stock with confirms:    %s (target ≥ 5×)    %s\n", ratio(ek, bestConfirm), pass(ek >= 5*bestConfirm))
	fmt.Printf("  eventkit / best stock without confirms: %s (target ≥ 1.2×)  %s   [stock counted until acked]\n", ratio(ek, bestNoConfirm), pass(ek >= 1.2*bestNoConfirm))
	fmt.Printf("  eventkit / best stock without confirms: %s (target ≥ 1.2×)  %s   [stock counted until the queue holds every event]\n", ratio(ek, bestNoConfirmB), pass(ek >= 1.2*bestNoConfirmB))
	fmt.Printf("  eventkit / raw pipelined confirms:      %s (target ≥ 0.90×, judged on the same-round ratios: %.2f)   [medians]\n", ratio(ek, ceil), median(ratios))
	b.record(result{Group: "drain", Label: "drain → RabbitMQ, stock confirms on", Eventkit: ek, Stock: bestConfirm, Unit: "events/s", HigherBetter: true,
		Target: "≥ 5×", Met: ek >= 5*bestConfirm})
	b.record(result{Group: "drain", Label: "drain → RabbitMQ, stock confirms off", Eventkit: ek, Stock: bestNoConfirm, Unit: "events/s", HigherBetter: true,
		Target: "≥ 1.2×", Met: ek >= 1.2*bestNoConfirm})
	b.record(result{Group: "drain", Label: "drain → RabbitMQ vs direct publish", Eventkit: ek, Stock: ceil, StockLabel: "direct", Unit: "events/s", HigherBetter: true,
		SameRound: median(ratios), Target: "≥ 0.90×", Met: median(ratios) >= 0.9})
	return nil
}

// ---- Kafka (kfake) -------------------------------------------------------------

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
