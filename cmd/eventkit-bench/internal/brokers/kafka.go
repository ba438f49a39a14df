package brokers

import (
	"errors"
	"fmt"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Kafka produces each Publish call as one batch (SyncProducer.SendMessages)
// with acks=all and the idempotent producer; the partition_key metadata is
// the record key.
type Kafka struct {
	producer sarama.SyncProducer
}

// NewKafka connects to brokers.
func NewKafka(brokers []string) (*Kafka, error) {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.ClientID = "eventkit-relay"
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Idempotent = true
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	cfg.Producer.Retry.Max = 3
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Flush.MaxMessages = 0
	p, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	return &Kafka{producer: p}, nil
}

// Publish sends msgs as one batch and returns once Kafka acknowledged all,
// or a *PublishError naming those it did not.
func (k *Kafka) Publish(topic string, msgs ...*message.Message) error {
	pms := make([]*sarama.ProducerMessage, len(msgs))
	for i, m := range msgs {
		headers := make([]sarama.RecordHeader, 0, len(m.Metadata)+1)
		headers = append(headers, sarama.RecordHeader{Key: []byte(UUIDHeader), Value: []byte(m.UUID)})
		for key, v := range m.Metadata {
			headers = append(headers, sarama.RecordHeader{Key: []byte(key), Value: []byte(v)})
		}
		pm := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(m.Payload), Headers: headers, Metadata: m.UUID}
		if key := m.Metadata.Get("partition_key"); key != "" {
			pm.Key = sarama.StringEncoder(key)
		}
		pms[i] = pm
	}
	err := k.producer.SendMessages(pms)
	if err == nil {
		return nil
	}
	var perrs sarama.ProducerErrors
	if !errors.As(err, &perrs) {
		return unavailable{err}
	}
	failed := make([]string, 0, len(perrs))
	for _, pe := range perrs {
		failed = append(failed, pe.Msg.Metadata.(string))
	}
	var why error = unavailable{perrs[0].Err}
	if errors.Is(perrs[0].Err, sarama.ErrMessageSizeTooLarge) || errors.Is(perrs[0].Err, sarama.ErrInvalidMessage) {
		why = rejected{perrs[0].Err}
	}
	return &PublishError{UUIDs: failed, Err: why}
}

// Close closes the producer.
func (k *Kafka) Close() error { return k.producer.Close() }
