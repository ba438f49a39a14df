package amqp

import (
	"context"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/b2131a45/eventkit/transports/internal/errs"
)

// Depth returns how many messages wait in the consumer group's queue on
// topic, QueueName(topic, group), as the broker counts them: the ready
// messages of a passive queue declare, on a channel of its own (nothing is
// declared or taken). Messages delivered to a consumer and not acked yet are
// not counted. A missing queue has depth 0 — see Exists.
func (t *Transport) Depth(ctx context.Context, topic, group string) (int64, error) {
	if group == "" {
		return 0, ErrNoGroup
	}
	if err := errs.CheckName("amqp: consumer group", group); err != nil {
		return 0, err
	}
	if err := checkNames(topic, group); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	dialCtx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	conn, err := t.consume.get(dialCtx)
	if err != nil {
		return 0, t.secrets.Error(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		return 0, t.secrets.Error(fmt.Errorf("amqp: open channel: %w", err))
	}
	queue := QueueName(topic, group)
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	_ = ch.Close()
	var ae *amqp.Error
	switch {
	case err == nil:
		return int64(q.Messages), nil
	case errors.As(err, &ae) && ae.Code == amqp.NotFound:
		return 0, nil
	default:
		return 0, t.secrets.Error(fmt.Errorf("amqp: passive declare of queue %q: %w", queue, err))
	}
}
