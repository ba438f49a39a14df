package kafka

import (
	"context"
	"fmt"

	"github.com/IBM/sarama"

	"github.com/b2131a45/eventkit/transports/internal/redact"
)

// Health reports whether the cluster answers: it connects a client to the
// brokers, which fetches the cluster metadata, and closes it. Sarama takes
// no context: the attempt is bounded by Config.DialTimeout, and ctx is only
// checked before it. The error, password redacted, wraps ErrUnavailable.
func (t *Transport) Health(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.pub.isClosed() {
		return ErrClosed
	}
	cfg := t.cfg.withDefaults()
	client, err := sarama.NewClient(cfg.Brokers, cfg.sarama())
	if err != nil {
		return redact.New(cfg.Password).Error(fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
	return client.Close()
}
