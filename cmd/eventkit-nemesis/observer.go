package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// observer watches the wire: a consumer group of its own on every topic
// (a quorum queue bound to the topic's exchange), connected straight to
// the nodes rather than through the proxies. It counts each message id's
// first deliveries — a message the broker delivers for the first time,
// so a relay's republish after a crash counts again and the broker's own
// redeliveries (redelivered flag) do not — so that duplicates on the wire
// are reported, not hidden. It never changes what the services see.
type observer struct {
	urls      []string
	topics    []string
	queueArgs amqp.Table // quorum queues

	mu           sync.Mutex
	published    map[string]int // id → first deliveries
	redeliveries int
	reconnects   int
}

func newObserver(urls, topics []string) *observer {
	return &observer{urls: urls, topics: topics, queueArgs: amqp.Table{"x-queue-type": "quorum"}, published: map[string]int{}}
}

// declare creates the observer's queues before the load starts.
func (o *observer) declare(ctx context.Context) error {
	conn, err := o.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	for _, topic := range o.topics {
		if err := ch.ExchangeDeclare(topic, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
			return fmt.Errorf("observer: declare exchange %s: %w", topic, err)
		}
		q := o.queue(topic)
		if _, err := ch.QueueDeclare(q, true, false, false, false, o.queueArgs); err != nil {
			return fmt.Errorf("observer: declare queue %s: %w", q, err)
		}
		if err := ch.QueueBind(q, "", topic, false, nil); err != nil {
			return fmt.Errorf("observer: bind %s: %w", q, err)
		}
	}
	return nil
}

func (o *observer) queue(topic string) string { return "nemesis.observer." + topic }

func (o *observer) dial() (*amqp.Connection, error) {
	var last error
	for _, u := range o.urls {
		conn, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
		if err == nil {
			return conn, nil
		}
		last = err
	}
	return nil, fmt.Errorf("observer: no node accepted: %w", last)
}

// run consumes until ctx ends, reconnecting after every loss.
func (o *observer) run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := o.consume(ctx); err != nil && ctx.Err() == nil {
			o.mu.Lock()
			o.reconnects++
			o.mu.Unlock()
			sleep(ctx, 500*time.Millisecond)
		}
	}
}

func (o *observer) consume(ctx context.Context) error {
	conn, err := o.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Qos(500, 0, false); err != nil {
		return err
	}
	var deliveries []<-chan amqp.Delivery
	for _, topic := range o.topics {
		d, err := ch.Consume(o.queue(topic), "", false, false, false, false, nil)
		if err != nil {
			return err
		}
		deliveries = append(deliveries, d)
	}
	// The connection, the channel or one consumer alone can end (a
	// quorum queue's leader moving cancels its consumers): any of them
	// means consuming again, or the observer would stop counting with the
	// connection still up.
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	ended := make(chan struct{}, len(deliveries))
	merged := make(chan amqp.Delivery)
	// stop releases the forwarding goroutines when consume returns: one
	// blocked handing over a delivery nobody reads any more would
	// otherwise hold wg.Wait, and the observer, for good.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, d := range deliveries {
		wg.Go(func() {
			for m := range d {
				select {
				case merged <- m:
				case <-stop:
					return
				}
			}
			ended <- struct{}{}
		})
	}
	defer wg.Wait()
	defer conn.Close()
	defer close(stop)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-closed:
			return fmt.Errorf("observer: connection lost: %v", err)
		case err := <-chClosed:
			return fmt.Errorf("observer: channel closed: %v", err)
		case <-ended:
			return fmt.Errorf("observer: a consumer was cancelled")
		case m := <-merged:
			o.mu.Lock()
			if m.Redelivered {
				o.redeliveries++
				if _, seen := o.published[m.MessageId]; !seen { // its first delivery was not counted
					o.published[m.MessageId] = 1
				}
			} else {
				o.published[m.MessageId]++
			}
			o.mu.Unlock()
			_ = m.Ack(false)
		}
	}
}

// counts returns the distinct messages seen, the duplicates (first
// deliveries beyond one per id) and the broker's redeliveries to the
// observer itself.
func (o *observer) counts() (distinct, duplicates, redeliveries, reconnects int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, n := range o.published {
		duplicates += n - 1
	}
	return len(o.published), duplicates, o.redeliveries, o.reconnects
}
