package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"
)

// latency commits one event per transaction at -rate events/s for -duration
// and measures, per event, the time from its commit to its delivery to a
// RabbitMQ consumer, for eventkit and for the stock forwarder.
func (b *bench) latency(ctx context.Context) error {
	variants := []drainer{
		b.eventkitDrainer("eventkit relay", b.eventkitAMQP()),
		b.stockDrainer("stock forwarder (confirms, pool 1)", b.stockAMQP(true, 1)),
	}
	fmt.Printf("\n== commit → consumer latency, %d events/s for %v, %d runs ==\n", b.o.rate, b.o.duration, b.o.runs)
	p50s, p99s := map[string][]float64{}, map[string][]float64{}
	for run := 0; run < b.o.runs; run++ {
		for _, v := range variants {
			p50, p99, n, dups, err := b.latencyOnce(ctx, v)
			if err != nil {
				return err
			}
			p50s[v.label] = append(p50s[v.label], p50)
			p99s[v.label] = append(p99s[v.label], p99)
			fmt.Printf("  run %d  %-38s p50 %7.1f ms  p99 %7.1f ms  (%d events; consumer: 0 missing, %d duplicates)\n", run+1, v.label, p50, p99, n, dups)
		}
	}
	for _, v := range variants {
		fmt.Printf("  median %-36s p50 %7.1f ms  p99 %7.1f ms\n", v.label, median(p50s[v.label]), median(p99s[v.label]))
	}
	ek, stock := median(p99s[variants[0].label]), median(p99s[variants[1].label])
	fmt.Printf("  eventkit p99 %.1f ms (target ≤ 50 ms) %s\n", ek, pass(ek <= 50))
	fmt.Printf("  stock p99 / eventkit p99: %s (target ≥ 20×) %s\n", ratio(stock, ek), pass(stock >= 20*ek))
	b.record(result{Group: "latency", Label: fmt.Sprintf("commit → consumer p50 at %d/s", b.o.rate), Eventkit: median(p50s[variants[0].label]),
		Stock: median(p50s[variants[1].label]), Unit: "ms"})
	b.record(result{Group: "latency", Label: fmt.Sprintf("commit → consumer p99 at %d/s", b.o.rate), Eventkit: ek, Stock: stock, Unit: "ms",
		Target: "≤ 50 ms, ≥ 20× lower", Met: ek <= 50 && stock >= 20*ek})
	return nil
}

func (b *bench) latencyOnce(ctx context.Context, d drainer) (p50, p99 float64, n, dups int, err error) {
	name := b.name("lat")
	defer b.drop(name)
	topic := "bench.latency." + name
	ob, err := b.fill(ctx, name, topic, 0)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	r, err := dialRabbit(b.o.amqpURL)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer r.close()
	if err := b.declare(r, topic, nil); err != nil {
		return 0, 0, 0, 0, err
	}
	defer b.undeclare(topic)

	total := int(b.o.duration.Seconds() * float64(b.o.rate))
	committed := make([]time.Time, total)
	received := make([]time.Time, total)
	var mu sync.Mutex
	arrived := 0
	cons, err := dialRabbit(b.o.amqpURL)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer cons.close()
	deliveries, err := cons.ch.Consume(b.queueOf(topic), "", true, false, false, false, nil)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for dv := range deliveries {
			now := time.Now()
			var e BenchEvent
			if json.Unmarshal(dv.Body, &e) != nil || e.Seq < 0 || e.Seq >= total {
				continue
			}
			mu.Lock()
			if received[e.Seq].IsZero() {
				received[e.Seq] = now
				arrived++
			} else {
				dups++
			}
			mu.Unlock()
		}
	}()

	stop, err := d.start(ctx, ob)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	time.Sleep(time.Second) // let the relay settle and go idle

	tick := time.NewTicker(time.Second / time.Duration(b.o.rate))
	for i := 0; i < total && ctx.Err() == nil; i++ {
		<-tick.C
		tx, err := b.db.BeginTx(ctx, nil)
		if err != nil {
			tick.Stop()
			stop()
			return 0, 0, 0, 0, err
		}
		if err := ob.Add(ctx, tx, event(i)); err != nil {
			_ = tx.Rollback()
			tick.Stop()
			stop()
			return 0, 0, 0, 0, err
		}
		if err := tx.Commit(); err != nil {
			tick.Stop()
			stop()
			return 0, 0, 0, 0, err
		}
		mu.Lock()
		committed[i] = time.Now()
		mu.Unlock()
	}
	tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		got := arrived
		mu.Unlock()
		if got >= total {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	_ = cons.conn.Close()
	<-consumed

	mu.Lock()
	defer mu.Unlock()
	if arrived < total {
		return 0, 0, 0, 0, fmt.Errorf("EVENTS LOST: %s: %d of %d events arrived", d.label, arrived, total)
	}
	// Commit times are taken when Commit returns; an event can arrive
	// before that, hence the clamp at zero.
	lat := make([]float64, total)
	for i := range lat {
		lat[i] = max(float64(received[i].Sub(committed[i]).Microseconds())/1000, 0)
	}
	slices.Sort(lat)
	return lat[len(lat)*50/100], lat[len(lat)*99/100], len(lat), dups, nil
}
