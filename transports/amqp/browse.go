package amqp

import (
	"context"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/b2131a45/eventkit/transports/internal/errs"
)

// Browse returns up to limit (0: all) of the messages waiting in the
// consumer group's queue on topic, oldest first, without consuming them and
// without declaring anything: on a channel of its own it takes them with
// basic.get, unacked, and closing the channel gives them back to the
// broker, which puts them back where they were (RabbitMQ marks them
// redelivered). A consumer of the queue gets none of them while Browse
// holds them. A missing queue is (nil, nil) — see Exists.
func (t *Transport) Browse(ctx context.Context, topic, group string, limit int) ([]*message.Message, error) {
	if group == "" {
		return nil, ErrNoGroup
	}
	if err := errs.CheckName("amqp: consumer group", group); err != nil {
		return nil, err
	}
	if err := checkNames(topic, group); err != nil {
		return nil, err
	}
	dialCtx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	conn, err := t.consume.get(dialCtx)
	if err != nil {
		return nil, t.secrets.Error(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, t.secrets.Error(fmt.Errorf("amqp: open channel: %w", err))
	}
	defer func() { _ = ch.Close() }() // gives the unacked messages back
	queue := QueueName(topic, group)
	var msgs []*message.Message
	for limit == 0 || len(msgs) < limit {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d, ok, err := ch.Get(queue, false)
		var ae *amqp.Error
		switch {
		case errors.As(err, &ae) && ae.Code == amqp.NotFound && len(msgs) == 0:
			return nil, nil
		case err != nil:
			return nil, t.secrets.Error(fmt.Errorf("amqp: browse queue %q: %w", queue, err))
		case !ok:
			return msgs, nil
		}
		msgs = append(msgs, unmarshal(d))
	}
	return msgs, nil
}
