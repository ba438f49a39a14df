package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/transports/internal/errs"
	"github.com/b2131a45/eventkit/transports/internal/redact"
)

// ErrNoGroup is returned for an empty consumer group name.
var ErrNoGroup = errs.ErrNoGroup

// Subscriber is a member of a Kafka consumer group: each Subscribe joins
// the group with its own Sarama consumer group client, starting at the
// oldest offset when the group has none committed.
type Subscriber struct {
	cfg     Config // with defaults
	group   string
	secrets redact.Secrets
	log     *slog.Logger

	// ctx ends when the subscriber closes; every subscription's context
	// derives from it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

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
	if err := errs.CheckName("kafka: consumer group", group); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	secrets := redact.New(cfg.Password)
	ctx, cancel := context.WithCancel(context.Background())
	return &Subscriber{
		cfg:     cfg,
		group:   group,
		secrets: secrets,
		log:     secrets.Logger(cfg.Logger).With("consumer_group", group),
		ctx:     ctx,
		cancel:  cancel,
	}, nil
}

// Subscribe joins the group on topic and delivers its messages on the
// returned channel, one at a time per partition: the next message of a
// partition comes once the previous one is acked. The channel closes when
// ctx ends or the subscriber closes.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if err := checkTopic(topic); err != nil {
		return nil, err
	}
	retries := retryTopics(topic, s.group, s.cfg.DelayLevels)
	if err := s.createTopics(retries...); err != nil {
		return nil, err
	}
	group, err := sarama.NewConsumerGroup(s.cfg.Brokers, s.group, s.cfg.consumerSarama())
	if err != nil {
		return nil, s.secrets.Error(fmt.Errorf("kafka: subscribe to %q: %w", topic, err))
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	out := make(chan *message.Message)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		defer stop()
		s.consume(ctx, topic, retries, group, out)
	}()
	return out, nil
}

// consume runs the group's sessions on topic and its retry topics until ctx
// ends, then leaves the group and closes out.
func (s *Subscriber) consume(ctx context.Context, topic string, retries []string, group sarama.ConsumerGroup, out chan *message.Message) {
	defer close(out)
	log := s.log.With("topic", topic)
	log.Debug("kafka: subscription started")

	errorsDone := make(chan struct{})
	go func() {
		defer close(errorsDone)
		for err := range group.Errors() {
			log.Error("kafka: consumer group error", "err", err)
		}
	}()

	h := &handler{
		ctx:        ctx,
		topic:      topic,
		group:      group,
		out:        out,
		nackResend: s.cfg.NackResendInterval,
		onConsume:  s.cfg.OnConsume,
		log:        log,
	}
	retry := s.cfg.DialTimeout / 10
	for ctx.Err() == nil {
		// Consume returns at the end of each session (a rebalance):
		// run it again to rejoin.
		err := group.Consume(ctx, append([]string{topic}, retries...), h)
		if err == nil || ctx.Err() != nil {
			continue
		}
		if errors.Is(err, sarama.ErrClosedConsumerGroup) {
			break
		}
		log.Error("kafka: consume failed, retrying", "err", err, "retry_in", retry)
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}

	// Sessions commit their marked offsets when they end; Close leaves the
	// group and closes the client.
	if err := group.Close(); err != nil {
		log.Debug("kafka: close consumer group", "err", err)
	}
	<-errorsDone
	log.Debug("kafka: subscription stopped")
}

// SubscribeInitialize creates topic with Config.Partitions and
// Config.ReplicationFactor if it does not exist, and the group's retry
// topics (Config.DelayLevels).
func (s *Subscriber) SubscribeInitialize(topic string) (err error) {
	if err := checkTopic(topic); err != nil {
		return err
	}
	return s.createTopics(append([]string{topic}, retryTopics(topic, s.group, s.cfg.DelayLevels)...)...)
}

// createTopics creates the topics that do not exist, with Config.Partitions
// and Config.ReplicationFactor.
func (s *Subscriber) createTopics(topics ...string) error {
	if len(topics) == 0 {
		return nil
	}
	admin, err := sarama.NewClusterAdmin(s.cfg.Brokers, s.cfg.sarama())
	if err != nil {
		return s.secrets.Error(fmt.Errorf("kafka: create topics %q: %w", topics, err))
	}
	defer func() { _ = admin.Close() }()
	for _, topic := range topics {
		err = admin.CreateTopic(topic, &sarama.TopicDetail{
			NumPartitions:     s.cfg.Partitions,
			ReplicationFactor: s.cfg.ReplicationFactor,
		}, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return s.secrets.Error(fmt.Errorf("kafka: create topic %q: %w", topic, err))
		}
	}
	return nil
}

// Close stops the subscriptions, commits the offsets of acked messages and
// leaves the group. It is safe to call more than once.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)
