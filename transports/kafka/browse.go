package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/transports/internal/errs"
	"github.com/b2131a45/eventkit/transports/internal/redact"
)

// Browse returns up to limit (0: all) of the records the consumer group has
// yet to read on topic: in each partition from the group's committed offset
// (the oldest retained without one) to the end as it is now, partition by
// partition. It reads with a plain consumer of its own, never joins the
// group or commits an offset, and never creates the topic. A topic that does
// not exist is (nil, nil) — see Exists. Sarama takes no context: each read
// is bounded by Config.DialTimeout.
func (t *Transport) Browse(ctx context.Context, topic, group string, limit int) ([]*message.Message, error) {
	if group == "" {
		return nil, ErrNoGroup
	}
	if err := errs.CheckName("kafka: consumer group", group); err != nil {
		return nil, err
	}
	if ok, err := t.Exists(ctx, topic, group); err != nil || !ok {
		return nil, err
	}
	cfg := t.cfg.withDefaults()
	sc := cfg.sarama()
	sc.Metadata.AllowAutoTopicCreation = false
	secrets := redact.New(cfg.Password)
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return nil, secrets.Error(fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
	defer func() { _ = client.Close() }()
	partitions, err := client.Partitions(topic)
	if err != nil {
		return nil, secrets.Error(fmt.Errorf("%w: partitions of %q: %w", ErrUnavailable, topic, err))
	}
	slices.Sort(partitions)
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return nil, secrets.Error(fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
	committed, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: partitions})
	switch {
	case errors.Is(err, sarama.ErrGroupIDNotFound):
		committed = nil // no offsets: the group would start at the oldest
	case err != nil:
		return nil, secrets.Error(fmt.Errorf("%w: offsets of group %q: %w", ErrUnavailable, group, err))
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, secrets.Error(fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
	defer func() { _ = consumer.Close() }()
	var out []*message.Message
	for _, p := range partitions {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, secrets.Error(fmt.Errorf("%w: end of %s/%d: %w", ErrUnavailable, topic, p, err))
		}
		start, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, secrets.Error(fmt.Errorf("%w: start of %s/%d: %w", ErrUnavailable, topic, p, err))
		}
		if committed != nil {
			if b := committed.GetBlock(topic, p); b != nil && b.Offset > start {
				start = b.Offset
			}
		}
		if start >= end {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, start)
		if err != nil {
			return nil, secrets.Error(fmt.Errorf("%w: read %s/%d: %w", ErrUnavailable, topic, p, err))
		}
		for {
			if limit > 0 && len(out) == limit {
				_ = pc.Close()
				return out, nil
			}
			var km *sarama.ConsumerMessage
			var open bool
			select {
			case km, open = <-pc.Messages():
				if !open {
					return nil, fmt.Errorf("%w: reading %s/%d stopped", ErrUnavailable, topic, p)
				}
			case <-ctx.Done():
				_ = pc.Close()
				return nil, ctx.Err()
			case <-time.After(cfg.DialTimeout):
				_ = pc.Close()
				return nil, fmt.Errorf("%w: no record of %s/%d within %s", ErrUnavailable, topic, p, cfg.DialTimeout)
			}
			if msg, err := unmarshal(km); err == nil {
				out = append(out, msg)
			}
			if km.Offset+1 >= end {
				break
			}
		}
		_ = pc.Close()
	}
	return out, nil
}
