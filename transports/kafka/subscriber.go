package kafka

import (
	"context"
	"fmt"
	"sync"

	"github.com/IBM/sarama"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/transports/internal/errs"
	"github.com/b2131a45/eventkit/transports/internal/redact"
	"github.com/b2131a45/eventkit/transports/internal/wmlog"
)

// ErrNoGroup is returned for an empty consumer group name.
var ErrNoGroup = errs.ErrNoGroup

// Subscriber is a member of a Kafka consumer group: watermill-kafka's
// subscriber configured for safe integration-event consumption (oldest
// offset for new groups, the group name as consumer group).
type Subscriber struct {
	sub     *wmkafka.Subscriber
	secrets redact.Secrets

	mu     sync.Mutex
	closed bool
}

// NewSubscriber validates cfg and returns a subscriber of the consumer
// group. It connects on Subscribe.
func NewSubscriber(cfg Config, group string) (*Subscriber, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if group == "" {
		return nil, ErrNoGroup
	}
	cfg = cfg.withDefaults()
	secrets := redact.New(cfg.Password)
	sub, err := wmkafka.NewSubscriber(wmkafka.SubscriberConfig{
		Brokers:               cfg.Brokers,
		Unmarshaler:           marshaler{},
		OverwriteSaramaConfig: cfg.sarama(),
		ConsumerGroup:         group,
		NackResendSleep:       cfg.NackResendInterval,
		ReconnectRetrySleep:   cfg.DialTimeout / 10,
		InitializeTopicDetails: &sarama.TopicDetail{
			NumPartitions:     cfg.Partitions,
			ReplicationFactor: cfg.ReplicationFactor,
		},
	}, wmlog.Adapter(secrets.Logger(cfg.Logger)))
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return &Subscriber{sub: sub, secrets: secrets}, nil
}

// Subscribe joins the group on topic and delivers its messages on the
// returned channel, one at a time per partition. The channel closes when
// ctx ends or the subscriber closes.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	msgs, err := s.sub.Subscribe(ctx, topic)
	if err != nil {
		return nil, s.secrets.Error(fmt.Errorf("kafka: subscribe to %q: %w", topic, err))
	}
	return msgs, nil
}

// SubscribeInitialize creates topic with Config.Partitions and
// Config.ReplicationFactor if it does not exist.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	if err := s.sub.SubscribeInitialize(topic); err != nil {
		return s.secrets.Error(fmt.Errorf("kafka: create topic %q: %w", topic, err))
	}
	return nil
}

// Close stops the subscriptions, commits the offsets of acked messages and
// leaves the group. It is safe to call more than once.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return s.secrets.Error(s.sub.Close())
}

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)
