package amqp

import (
	"context"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/b2131a45/eventkit/transports/internal/errs"
)

// Exists reports whether the consumer group's durable queue on topic,
// QueueName(topic, group), is declared, without declaring anything: it
// makes a passive queue declare on a channel of its own, on the
// subscribers' connection (dialed if needed). The broker closes that channel
// when the queue is missing; the connection and the channels of the
// subscribers stay open. The exchange of topic is not looked at: without the
// group's queue there is nothing for the group to read.
//
// It returns ErrNoGroup for an empty group, an error wrapping
// errs.ErrInvalidName for a name Subscribe would refuse, ErrClosed after
// Close, and the connection's or broker's error otherwise, password
// redacted.
func (t *Transport) Exists(ctx context.Context, topic, group string) (bool, error) {
	if group == "" {
		return false, ErrNoGroup
	}
	if err := errs.CheckName("amqp: consumer group", group); err != nil {
		return false, err
	}
	if err := checkNames(topic, group); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	dialCtx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	conn, err := t.consume.get(dialCtx)
	if err != nil {
		return false, t.secrets.Error(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		return false, t.secrets.Error(fmt.Errorf("amqp: open channel: %w", err))
	}
	queue := QueueName(topic, group)
	_, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	// After a failed passive declare the broker has closed the channel;
	// Close then only reports that.
	_ = ch.Close()
	var ae *amqp.Error
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ae) && ae.Code == amqp.NotFound:
		return false, nil
	default:
		return false, t.secrets.Error(fmt.Errorf("amqp: passive declare of queue %q: %w", queue, err))
	}
}
