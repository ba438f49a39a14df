package sql

import (
	"context"
	"fmt"

	"github.com/b2131a45/eventkit/transports/internal/errs"
)

// Depth returns how many messages the consumer group has yet to read on
// topic: the rows Browse would return, counted with one SELECT COUNT(*)
// (it reads the rows after the group's offset, not the whole table). A
// topic whose table does not exist has depth 0 — see Exists.
func (t *Transport) Depth(ctx context.Context, topic, group string) (int64, error) {
	if group == "" {
		return 0, ErrNoGroup
	}
	if err := errs.CheckName("sql: consumer group", group); err != nil {
		return 0, err
	}
	if err := validateTopic(topic); err != nil {
		return 0, err
	}
	if t.pub.isClosed() {
		return 0, ErrClosed
	}
	if ok, err := t.Exists(ctx, topic, group); err != nil || !ok {
		return 0, err
	}
	from, _, args, err := t.unread(ctx, topic, group)
	if err != nil {
		return 0, err
	}
	var n int64
	if err := t.db.QueryRowContext(ctx, "SELECT COUNT(*)"+from, args...).Scan(&n); err != nil {
		return 0, t.secrets.Error(fmt.Errorf("sql: count %q: %w", topic, err))
	}
	return n, nil
}
