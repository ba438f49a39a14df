package memory

import (
	"context"

	"github.com/b2131a45/eventkit/transports/internal/errs"
)

// Exists reports whether topic was published to or subscribed to on this
// transport, for any consumer group (the topic is a log every group reads).
// It creates nothing.
//
// It returns ErrNoGroup for an empty group, an error wrapping
// errs.ErrInvalidName for a name Subscribe would refuse, and ErrClosed
// after Close.
func (t *Transport) Exists(_ context.Context, topic, group string) (bool, error) {
	if group == "" {
		return false, ErrNoGroup
	}
	if err := errs.CheckName("memory: topic", topic); err != nil {
		return false, err
	}
	if err := errs.CheckName("memory: consumer group", group); err != nil {
		return false, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false, ErrClosed
	}
	_, ok := t.topics[topic]
	return ok, nil
}
