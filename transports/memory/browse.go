package memory

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/transports/internal/errs"
)

// Browse returns copies of up to limit (0: all) of the messages the
// consumer group has yet to receive on topic, oldest first, without
// consuming them or creating anything.
func (t *Transport) Browse(_ context.Context, topic, group string, limit int) ([]*message.Message, error) {
	if group == "" {
		return nil, ErrNoGroup
	}
	if err := errs.CheckName("memory: topic", topic); err != nil {
		return nil, err
	}
	if err := errs.CheckName("memory: consumer group", group); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	log, ok := t.topics[topic]
	if !ok {
		return nil, nil
	}
	next := 0
	if cur, ok := log.groups[group]; ok {
		next = cur.next
	}
	var msgs []*message.Message
	for _, m := range log.msgs[next:] {
		if limit > 0 && len(msgs) == limit {
			break
		}
		msgs = append(msgs, clone(m))
	}
	return msgs, nil
}
