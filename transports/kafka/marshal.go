package kafka

import (
	"github.com/IBM/sarama"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
)

// UUIDHeader is the record header that carries the message UUID
// (watermill-kafka's UUIDHeaderKey).
const UUIDHeader = wmkafka.UUIDHeaderKey

// marshaler is watermill-kafka's DefaultMarshaler with the partition key
// (events.KeyPartitionKey) as the message key, like watermill-kafka's
// NewWithPartitioningMarshaler, except that a message without a partition
// key gets no key, so that keyless messages spread over the partitions
// instead of all hashing the empty key to one.
type marshaler struct {
	wmkafka.DefaultMarshaler
}

func (m marshaler) Marshal(topic string, msg *message.Message) (*sarama.ProducerMessage, error) {
	pm, err := m.DefaultMarshaler.Marshal(topic, msg)
	if err != nil {
		return nil, err
	}
	if key := msg.Metadata.Get(events.KeyPartitionKey); key != "" {
		pm.Key = sarama.StringEncoder(key)
	}
	return pm, nil
}

var _ wmkafka.MarshalerUnmarshaler = marshaler{}
