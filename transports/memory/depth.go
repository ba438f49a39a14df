package memory

import (
	"context"

	"github.com/b2131a45/eventkit/transports/internal/errs"
)

// Depth returns how many messages the consumer group has yet to receive on
// topic: those Browse would return. A topic never used has depth 0.
func (t *Transport) Depth(_ context.Context, topic, group string) (int64, error) {
	if group == "" {
		return 0, ErrNoGroup
	}
	if err := errs.CheckName("memory: topic", topic); err != nil {
		return 0, err
	}
	if err := errs.CheckName("memory: consumer group", group); err != nil {
		return 0, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, ErrClosed
	}
	log, ok := t.topics[topic]
	if !ok {
		return 0, nil
	}
	next := 0
	if cur, ok := log.groups[group]; ok {
		next = cur.next
	}
	return int64(len(log.msgs) - next), nil
}
