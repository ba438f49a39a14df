package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// overflow drains 2,000 events into a queue limited to 100 messages with
// x-overflow reject-publish, read by a consumer slower than the relay: the
// broker nacks what does not fit. It counts the events that never reach
// the consumer.
func (b *bench) overflow(ctx context.Context) error {
	const n = 2000
	variants := []drainer{
		b.stockDrainer("stock forwarder, no confirms (pool 1)", b.stockAMQP(false, 1)),
		b.eventkitDrainer("eventkit relay", b.eventkitAMQP()),
	}
	fmt.Printf("\n== queue overflow (max-length 100, reject-publish, slow consumer), %d events ==\n", n)
	for _, v := range variants {
		lost, took, err := b.overflowOnce(ctx, v, n)
		if err != nil {
			return err
		}
		fmt.Printf("  %-40s lost %4d of %d  (%v)\n", v.label, lost, n, took.Round(time.Millisecond))
		if v.label == "eventkit relay" {
			fmt.Printf("  eventkit loses none: %s\n", pass(lost == 0))
		}
	}
	return nil
}

func (b *bench) overflowOnce(ctx context.Context, d drainer, n int) (lost int, took time.Duration, err error) {
	name := b.name("ovf")
	defer b.drop(name)
	topic := "bench.overflow." + name
	ob, err := b.fill(ctx, name, topic, n)
	if err != nil {
		return 0, 0, err
	}
	r, err := dialRabbit(b.o.amqpURL)
	if err != nil {
		return 0, 0, err
	}
	defer r.close()
	if err := b.declare(r, topic, amqp.Table{"x-max-length": int32(100), "x-overflow": "reject-publish"}); err != nil {
		return 0, 0, err
	}
	defer b.undeclare(topic)
	cons, err := dialRabbit(b.o.amqpURL)
	if err != nil {
		return 0, 0, err
	}
	defer cons.close()
	if err := cons.ch.Qos(20, 0, false); err != nil {
		return 0, 0, err
	}
	deliveries, err := cons.ch.Consume(b.queueOf(topic), "", false, false, false, false, nil)
	if err != nil {
		return 0, 0, err
	}
	var mu sync.Mutex
	seen := map[int]bool{}
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for dv := range deliveries {
			time.Sleep(time.Millisecond) // a consumer slower than the relay
			var e BenchEvent
			if json.Unmarshal(dv.Body, &e) == nil {
				mu.Lock()
				seen[e.Seq] = true
				mu.Unlock()
			}
			_ = dv.Ack(false)
		}
	}()

	began := time.Now()
	stop, err := d.start(ctx, ob)
	if err != nil {
		return 0, 0, err
	}
	// Done when every row is marked (eventkit) or acked (stock) and the
	// queue is empty, or after two minutes.
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ok, err := d.done(ctx, ob)
		if err != nil {
			stop()
			return 0, 0, err
		}
		mu.Lock()
		got := len(seen)
		mu.Unlock()
		if got == n || ok {
			if q, err := r.ch.QueueDeclarePassive(b.queueOf(topic), true, false, false, false, nil); err == nil && q.Messages == 0 && ok {
				time.Sleep(200 * time.Millisecond) // the consumer's prefetch
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	took = time.Since(began)
	stop()
	_ = cons.conn.Close()
	<-consumed
	mu.Lock()
	defer mu.Unlock()
	return n - len(seen), took, nil
}
