package kafka

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/transports/internal/errs"
	"github.com/b2131a45/eventkit/transports/internal/redact"
)

// ErrClosed is returned after Close.
var ErrClosed = errs.ErrClosed

// PublishError lists the messages of a Publish call that were not
// acknowledged, and why.
type PublishError = errs.PublishError

// Causes of a PublishError; each wraps the Sarama error. Both have an
// Unavailable() and a Permanent() method (the conventions of eventkit's
// outbox relay).
var (
	// ErrUnavailable: the cluster could not take the messages after
	// Sarama's retries (no leader, not enough replicas, lost
	// connections...). Publishing them again later may succeed.
	ErrUnavailable error = errs.Unavailable("kafka: the cluster did not acknowledge the message")
	// ErrRejected: the messages themselves are refused (too large,
	// invalid, topic not allowed); publishing them again will fail again.
	ErrRejected error = errs.Refused("kafka: the message was rejected")
)

// rejections are the Kafka errors about the message or its topic.
var rejections = []error{
	sarama.ErrMessageSizeTooLarge, sarama.ErrMessageSetSizeTooLarge, sarama.ErrInvalidMessage,
	sarama.ErrInvalidMessageSize, sarama.ErrInvalidRecord, sarama.ErrInvalidTimestamp,
	sarama.ErrInvalidTopic, sarama.ErrTopicAuthorizationFailed, sarama.ErrPolicyViolation,
}

// cause classifies a Sarama error as ErrRejected or ErrUnavailable.
func cause(err error) error {
	for _, r := range rejections {
		if errors.Is(err, r) {
			return fmt.Errorf("%w: %w", ErrRejected, err)
		}
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Publisher is an idempotent, acks=all Kafka producer. It is safe for
// concurrent use.
type Publisher struct {
	producer sarama.SyncProducer
	cfg      Config
	secrets  redact.Secrets

	mu     sync.RWMutex // held for reading by Publish, for writing by Close
	closed bool
}

// NewPublisher validates cfg and connects to the cluster.
func NewPublisher(cfg Config) (*Publisher, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	secrets := redact.New(cfg.Password)
	producer, err := sarama.NewSyncProducer(cfg.Brokers, cfg.sarama())
	if err != nil {
		return nil, secrets.Error(fmt.Errorf("kafka: connect producer to %v: %w", cfg.Brokers, err))
	}
	return &Publisher{producer: producer, cfg: cfg, secrets: secrets}, nil
}

// Publish sends msgs to topic as one batch and returns when all of them are
// acknowledged by the in-sync replicas. If some are not, it returns a
// *PublishError listing them; the others were written. It returns
// ErrClosed after Close.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	if err := checkTopic(topic); err != nil {
		return &PublishError{Topic: topic, UUIDs: uuids(msgs), Err: err}
	}
	if len(msgs) == 0 {
		return nil
	}
	batch := make([]*sarama.ProducerMessage, len(msgs))
	for i, msg := range msgs {
		pm, err := marshal(p.cfg.Wire, topic, msg)
		if err == nil && p.cfg.OnProduce != nil {
			err = p.cfg.OnProduce(msg, pm)
		}
		if err != nil {
			return &PublishError{Topic: topic, UUIDs: uuids(msgs), Err: fmt.Errorf("%w: marshal message %s: %w", ErrRejected, msg.UUID, err)}
		}
		pm.Metadata = msg.UUID
		batch[i] = pm
	}
	err := p.producer.SendMessages(batch)
	if err == nil {
		return nil
	}
	var perrs sarama.ProducerErrors
	if !errors.As(err, &perrs) || len(perrs) == 0 {
		return p.secrets.Error(&PublishError{Topic: topic, UUIDs: uuids(msgs), Err: cause(err)})
	}
	failed := map[string]bool{}
	for _, pe := range perrs {
		if id, ok := pe.Msg.Metadata.(string); ok {
			failed[id] = true
		}
	}
	var ids []string
	for _, msg := range msgs {
		if failed[msg.UUID] {
			ids = append(ids, msg.UUID)
		}
	}
	return p.secrets.Error(&PublishError{Topic: topic, UUIDs: ids, Err: cause(perrs[0].Err)})
}

// Close waits for the Publish calls in flight, then closes the producer.
// It is safe to call more than once.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	return p.secrets.Error(p.producer.Close())
}

func uuids(msgs []*message.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.UUID
	}
	return ids
}

var _ message.Publisher = (*Publisher)(nil)

func (p *Publisher) isClosed() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.closed
}

// checkTopic rejects a topic name before it reaches the broker: the names
// every transport accepts (errs.CheckName), without ':', which Kafka
// forbids.
func checkTopic(topic string) error {
	if err := errs.CheckName("kafka: topic", topic); err != nil {
		return err
	}
	if strings.Contains(topic, ":") {
		return fmt.Errorf("%w: kafka: topic %q: Kafka topic names cannot contain ':'", errs.ErrInvalidName, topic)
	}
	return nil
}
