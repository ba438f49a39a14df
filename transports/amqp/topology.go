package amqp

import (
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/b2131a45/eventkit/transports/internal/errs"
)

// maxQueueName is AMQP's limit on exchange and queue names, in bytes.
const maxQueueName = 255

// checkNames rejects a topic or a group's queue name before it reaches the
// broker.
func checkNames(topic, group string) error {
	if err := errs.CheckName("amqp: topic", topic); err != nil {
		return err
	}
	if q := QueueName(topic, group); len(q) > maxQueueName {
		return fmt.Errorf("%w: amqp: queue %.40q… is %d bytes long, longer than %d", errs.ErrInvalidName, q, len(q), maxQueueName)
	}
	return nil
}

// QueueName is the durable queue of a consumer group on a topic:
// topic_group, as watermill-amqp's GenerateQueueNameTopicNameWithSuffix.
func QueueName(topic, group string) string {
	return topic + "_" + group
}

// declareExchange declares the topic's durable fanout exchange.
func declareExchange(ch *amqp.Channel, topic string) error {
	if err := ch.ExchangeDeclare(topic, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %q: %w", topic, err)
	}
	return nil
}

// declareGroup declares the exchange, the group's durable queue and the
// binding between them.
func declareGroup(ch *amqp.Channel, topic, group string, args amqp.Table) error {
	if err := declareExchange(ch, topic); err != nil {
		return err
	}
	queue := QueueName(topic, group)
	if _, err := ch.QueueDeclare(queue, true, false, false, false, args); err != nil {
		return fmt.Errorf("declare queue %q: %w", queue, err)
	}
	if err := ch.QueueBind(queue, "", topic, false, nil); err != nil {
		return fmt.Errorf("bind queue %q to exchange %q: %w", queue, topic, err)
	}
	return nil
}
