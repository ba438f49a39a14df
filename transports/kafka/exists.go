package kafka

import (
	"context"
	"fmt"
	"slices"

	"github.com/IBM/sarama"

	"github.com/b2131a45/eventkit/transports/internal/errs"
	"github.com/b2131a45/eventkit/transports/internal/redact"
)

// Exists reports whether topic is in the cluster metadata, for any consumer
// group (a Kafka topic is a log every group reads). It never creates the
// topic: it fetches the metadata of all topics, with automatic topic
// creation turned off, on a client of its own that it closes. Sarama takes
// no context: the attempt is bounded by Config.DialTimeout, and ctx is only
// checked before it.
//
// It returns ErrNoGroup for an empty group, an error wrapping
// errs.ErrInvalidName for a name Subscribe would refuse, ErrClosed after
// Close, and an error wrapping ErrUnavailable, password redacted, when the
// cluster does not answer.
func (t *Transport) Exists(ctx context.Context, topic, group string) (bool, error) {
	if group == "" {
		return false, ErrNoGroup
	}
	if err := errs.CheckName("kafka: consumer group", group); err != nil {
		return false, err
	}
	if err := checkTopic(topic); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if t.pub.isClosed() {
		return false, ErrClosed
	}
	cfg := t.cfg.withDefaults()
	sc := cfg.sarama()
	sc.Metadata.Full = true // NewClient fetches every topic's metadata
	sc.Metadata.AllowAutoTopicCreation = false
	secrets := redact.New(cfg.Password)
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return false, secrets.Error(fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
	defer func() { _ = client.Close() }()
	topics, err := client.Topics()
	if err != nil {
		return false, secrets.Error(fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
	return slices.Contains(topics, topic), nil
}
