package amqp

import (
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/transports/internal/errs"
)

// DelayQueueName is the durable queue that holds a consumer group's messages
// delayed by d: topic_group.delay-<d>, e.g. orders_inventory.delay-10s.
func DelayQueueName(topic, group string, d time.Duration) string {
	return QueueName(topic, group) + ".delay-" + d.String()
}

// Delay publishes msgs, with publisher confirms, to the group's delay queue
// for d (DelayQueueName), which it declares first if needed: a durable
// queue with x-message-ttl d whose expired messages RabbitMQ dead-letters,
// through the default exchange, into the group's own queue topic_group. So
// a delayed message comes back after d to that group only, not to the
// other groups of the topic, with no plugin (the delayed-message exchange is
// not on a stock RabbitMQ). The delay survives restarts of the consumer and
// of the broker (durable queue, persistent messages). Each message gets
// events.KeyDeliverAt. Declaring is idempotent, from any number of
// instances; a delay queue is named after its delay, so changing a level's
// delay makes a new queue and the old one still empties into the group's
// queue.
//
// With Config.QueueArgs x-queue-type quorum the delay queues are quorum
// queues too, with at-least-once dead-lettering (x-dead-letter-strategy,
// which needs x-overflow reject-publish), and the publisher makes sure
// RabbitMQ expires them on time even when a leader change made it miss
// their timer (see kicker); classic queues dead-letter at most once, which
// loses a message only if the broker fails at the moment its delay ends.
//
// level is not used: RabbitMQ tells levels apart by their delay.
func (p *Publisher) Delay(topic, group string, _ int, d time.Duration, msgs ...*message.Message) error {
	select {
	case <-p.closing:
		return ErrClosed
	default:
	}
	if err := checkNames(topic, group); err != nil {
		return &PublishError{Topic: topic, UUIDs: uuids(msgs), Err: err}
	}
	if d <= 0 {
		return &PublishError{Topic: topic, UUIDs: uuids(msgs), Err: fmt.Errorf("%w: amqp: delay %s is not positive", errs.ErrInvalidName, d)}
	}
	queue := DelayQueueName(topic, group, d)
	if len(queue) > maxQueueName {
		return &PublishError{Topic: topic, UUIDs: uuids(msgs),
			Err: fmt.Errorf("%w: amqp: delay queue %.40q… is %d bytes long, longer than %d", errs.ErrInvalidName, queue, len(queue), maxQueueName)}
	}
	due := time.Now().Add(d).UTC().Format(time.RFC3339Nano)
	for _, m := range msgs {
		m.Metadata.Set(events.KeyDeliverAt, due)
	}
	args := p.delayQueueArgs(QueueName(topic, group), d)
	to := target{topic: topic, exchange: "", routingKey: queue, key: "queue " + queue,
		declare: func(ch *amqp.Channel) error {
			if _, err := ch.QueueDeclare(queue, true, false, false, false, args); err != nil {
				return fmt.Errorf("declare delay queue %q: %w", queue, err)
			}
			return nil
		}}
	cc, err := p.acquire()
	if err != nil {
		return err
	}
	err = p.publish(&cc, to, msgs)
	p.slots <- cc
	if err == nil && p.quorum() {
		p.kicker().delayed(queue, time.Now().Add(d), d)
	}
	return p.secrets.Error(err)
}

func (p *Publisher) quorum() bool { return p.cfg.QueueArgs["x-queue-type"] == "quorum" }

// kicker returns the publisher's kicker, started at the first call.
func (p *Publisher) kicker() *kicker {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kick == nil {
		p.kick = newKicker(p)
	}
	return p.kick
}

// DelayLevels reports that RabbitMQ brings back any number of levels.
func (p *Publisher) DelayLevels() int { return 0 }

func (p *Publisher) delayQueueArgs(groupQueue string, d time.Duration) amqp.Table {
	args := amqp.Table{
		"x-message-ttl":             max(d.Milliseconds(), 1),
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": groupQueue,
	}
	if p.quorum() {
		args["x-queue-type"] = "quorum"
		args["x-dead-letter-strategy"] = "at-least-once"
		args["x-overflow"] = "reject-publish"
	}
	return args
}
