package transports

import (
	"context"
	"errors"
	"fmt"
)

// Depth returns how many messages the consumer group has yet to receive on
// topic, without reading, creating or changing anything, so that a page or
// a command can show the size of a dead-letter topic of any size:
//
//   - AMQP: the ready messages of the group's queue (a passive queue
//     declare; messages delivered and not acked yet are not counted);
//   - Kafka: per partition, the group's committed offset (the oldest
//     retained without one) to the end, summed;
//   - PostgreSQL and MySQL: a COUNT of the rows after the group's offset;
//   - memory: the log after the group's cursor.
//
// It is what Browse with no limit would return, counted. A topic that does
// not exist for the group (Exists) has depth 0. Errors are those of Exists.
func (t *Transport) Depth(ctx context.Context, topic, group string) (int64, error) {
	if group == "" {
		return 0, ErrNoGroup
	}
	d, ok := t.backend.(interface {
		Depth(ctx context.Context, topic, group string) (int64, error)
	})
	if !ok {
		return 0, fmt.Errorf("transports: %s cannot count a topic", t.kind)
	}
	n, err := d.Depth(ctx, topic, group)
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return 0, ErrClosed
		}
		return 0, fmt.Errorf("transports: count topic %q for group %q: %w", topic, group, err)
	}
	return n, nil
}
