package transports

import (
	"context"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/transports/internal/errs"
)

// Exists reports whether topic exists for the consumer group, without
// creating or changing anything on the broker: it is the check to make
// before reading a topic that must already be there, such as a dead-letter
// topic, since Subscribe declares what it subscribes to. What "exists"
// means follows each transport's topology:
//
//   - AMQP: the group's durable queue, amqp.QueueName(topic, group), is
//     declared (a passive queue declare, on a channel of its own);
//   - Kafka: the topic is in the cluster metadata (for any group);
//   - PostgreSQL and MySQL: the topic's watermill-sql messages table
//     exists (for any group);
//   - memory: the topic was published to or subscribed to (for any group).
//
// It returns ErrNoGroup for an empty group, an error wrapping
// ErrInvalidName for a name the transport refuses (before any round trip),
// ErrClosed after Close, and the broker's or database's error, password
// redacted, when it cannot tell.
func (t *Transport) Exists(ctx context.Context, topic, group string) (bool, error) {
	if group == "" {
		return false, ErrNoGroup
	}
	e, ok := t.backend.(interface {
		Exists(ctx context.Context, topic, group string) (bool, error)
	})
	if !ok {
		return false, fmt.Errorf("transports: %s cannot tell whether a topic exists", t.kind)
	}
	found, err := e.Exists(ctx, topic, group)
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return false, ErrClosed
		}
		return false, fmt.Errorf("transports: does topic %q exist for group %q: %w", topic, group, err)
	}
	return found, nil
}

// CheckName returns nil when every transport accepts name as a topic or a
// consumer group (what says which, for the error): 1 to 249 of A-Z a-z 0-9
// . _ : -, not starting with . : or - (see Names in the package
// documentation). Otherwise the error names the bad value and wraps
// ErrInvalidName. A transport may refuse more: Kafka topics with ':', AMQP
// queue names (topic_group) longer than 255 bytes; Exists, Publish and
// Subscribe report those. CheckName needs no connection, so that a program
// can refuse a bad name before it dials the broker.
func CheckName(what, name string) error {
	return errs.CheckName(what, name)
}

// Browse returns up to limit (0: all) of the messages the consumer group has
// yet to receive on topic, oldest first, read without consuming them and
// without creating or declaring anything, so that a reading command can show
// a topic and leave it as it was:
//
//   - AMQP: the group's queue, taken with basic.get unacked and given back
//     when Browse returns (RabbitMQ puts them back where they were and marks
//     them redelivered; a consumer gets none of them meanwhile);
//   - Kafka: every partition from the group's committed offset to its end,
//     with a consumer outside the group;
//   - PostgreSQL and MySQL: the topic's table after the group's offset,
//     with plain SELECTs;
//   - memory: the log after the group's cursor.
//
// A topic that does not exist for the group (Exists) gives no messages and
// no error. Errors are those of Exists.
func (t *Transport) Browse(ctx context.Context, topic, group string, limit int) ([]*message.Message, error) {
	if group == "" {
		return nil, ErrNoGroup
	}
	if limit < 0 {
		return nil, fmt.Errorf("transports: browse limit %d is negative", limit)
	}
	b, ok := t.backend.(interface {
		Browse(ctx context.Context, topic, group string, limit int) ([]*message.Message, error)
	})
	if !ok {
		return nil, fmt.Errorf("transports: %s cannot browse a topic", t.kind)
	}
	msgs, err := b.Browse(ctx, topic, group, limit)
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("transports: browse topic %q for group %q: %w", topic, group, err)
	}
	return msgs, nil
}
