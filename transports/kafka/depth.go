package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/IBM/sarama"

	"github.com/b2131a45/eventkit/transports/internal/errs"
	"github.com/b2131a45/eventkit/transports/internal/redact"
)

// Depth returns how many records the consumer group has yet to read on
// topic: in each partition, from the group's committed offset (the oldest
// retained without one) to the end, summed — the records Browse would read,
// counted from offsets without reading any. A topic that does not exist has
// depth 0 — see Exists.
func (t *Transport) Depth(ctx context.Context, topic, group string) (int64, error) {
	if group == "" {
		return 0, ErrNoGroup
	}
	if err := errs.CheckName("kafka: consumer group", group); err != nil {
		return 0, err
	}
	if ok, err := t.Exists(ctx, topic, group); err != nil || !ok {
		return 0, err
	}
	cfg := t.cfg.withDefaults()
	sc := cfg.sarama()
	sc.Metadata.AllowAutoTopicCreation = false
	secrets := redact.New(cfg.Password)
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return 0, secrets.Error(fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
	defer func() { _ = client.Close() }()
	partitions, err := client.Partitions(topic)
	if err != nil {
		return 0, secrets.Error(fmt.Errorf("%w: partitions of %q: %w", ErrUnavailable, topic, err))
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return 0, secrets.Error(fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
	committed, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: partitions})
	switch {
	case errors.Is(err, sarama.ErrGroupIDNotFound):
		committed = nil
	case err != nil:
		return 0, secrets.Error(fmt.Errorf("%w: offsets of group %q: %w", ErrUnavailable, group, err))
	}
	var total int64
	for _, p := range partitions {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return 0, secrets.Error(fmt.Errorf("%w: end of %s/%d: %w", ErrUnavailable, topic, p, err))
		}
		start, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return 0, secrets.Error(fmt.Errorf("%w: start of %s/%d: %w", ErrUnavailable, topic, p, err))
		}
		if committed != nil {
			if b := committed.GetBlock(topic, p); b != nil && b.Offset > start {
				start = b.Offset
			}
		}
		total += max(end-start, 0)
	}
	return total, nil
}
