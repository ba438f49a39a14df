package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/b2131a45/eventkit/cmd/eventkit-bench/internal/brokers"
	"github.com/b2131a45/eventkit/transports"
)

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

func (b *bench) undeclare(topic string) {
	var exchanges []string
	if b.useTransports() {
		exchanges = []string{topic}
	}
	b.deleteTopology(topic, []string{b.queueOf(topic)}, exchanges)
}

// deleteTopology deletes queues, then exchanges, that a scenario declared
// or made a transport declare, on a connection of its own: the scenario's
// may have been lost with the broker (it is redialled for up to 30 s, for a
// broker that restarts), and each deletion on its own channel, so that one
// failure does not stop the others. What it cannot delete it names.
func (b *bench) deleteTopology(what string, queues, exchanges []string) {
	var conn *amqp.Connection
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		if conn, err = amqp.Dial(b.o.amqpURL); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		log.Printf("%s: cannot delete queues %v and exchanges %v: RabbitMQ: %v", what, queues, exchanges, err)
		return
	}
	defer conn.Close()
	del := func(kind, name string, f func(ch *amqp.Channel) error) {
		ch, err := conn.Channel()
		if err == nil {
			err = f(ch)
			_ = ch.Close()
		}
		if err != nil {
			log.Printf("%s: delete %s %s: %v", what, kind, name, err)
		}
	}
	for _, q := range queues {
		del("queue", q, func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err })
	}
	for _, x := range exchanges {
		del("exchange", x, func(ch *amqp.Channel) error { return ch.ExchangeDelete(x, false, false) })
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
			r.close()
			b.undeclare(topic)
		}, nil
}
