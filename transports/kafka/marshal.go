package kafka

import (
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
)

// UUIDHeader is the record header that carries the message UUID
// (watermill-kafka's UUIDHeaderKey).
const UUIDHeader = wmkafka.UUIDHeaderKey

// Header names of the CloudEvents Kafka binding.
const (
	// CloudEventsHeaderPrefix prefixes the CloudEvents attributes of a
	// record written in binary mode (events.WireCloudEvents): "ce_id"…
	CloudEventsHeaderPrefix = "ce_"
	// ContentTypeHeader carries the media type of the record value
	// (datacontenttype in binary mode, application/cloudevents+json in
	// structured mode), as the CloudEvents Kafka binding names it.
	ContentTypeHeader = "content-type"
)

// marshal encodes msg as a record in the wire form w. In every form the
// record key is the partition key (none when the event has none, so keyless
// records spread over the partitions), the record timestamp is the event's
// occurred_at, and the UUID header is set, as watermill-kafka's
// DefaultMarshaler sets it. The headers are:
//
//   - WireEventkit: the metadata as is;
//   - WireCloudEvents: the envelope as "ce_"-prefixed attributes and
//     datacontenttype as content-type, the rest of the metadata as is;
//   - WireCloudEventsStructured: the rest of the metadata and content-type
//     application/cloudevents+json; the value is the structured event.
func marshal(w events.Wire, topic string, msg *message.Message) (*sarama.ProducerMessage, error) {
	md := msg.Metadata
	if md[UUIDHeader] != "" {
		return nil, fmt.Errorf("metadata %s is reserved for the message UUID", UUIDHeader)
	}
	pm := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(msg.Payload)}
	if key := md[events.KeyPartitionKey]; key != "" {
		pm.Key = sarama.StringEncoder(key)
	}
	if at := md[events.KeyOccurredAt]; at != "" {
		if t, err := events.ParseTime(at); err == nil {
			pm.Timestamp = t
		}
	}
	header := func(k, v string) {
		pm.Headers = append(pm.Headers, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
	}
	switch w {
	case events.WireCloudEvents, events.WireCloudEventsStructured:
		ce := events.CloudEventOf(msg)
		pm.Headers = make([]sarama.RecordHeader, 0, len(ce.Headers)+len(ce.Attributes)+2)
		header(UUIDHeader, msg.UUID)
		for k, v := range ce.Headers {
			header(k, v)
		}
		if w == events.WireCloudEvents {
			for k, v := range ce.Attributes {
				header(CloudEventsHeaderPrefix+k, v)
			}
			if ce.DataContentType != "" {
				header(ContentTypeHeader, ce.DataContentType)
			}
			break
		}
		body, err := ce.MarshalStructured()
		if err != nil {
			return nil, fmt.Errorf("structured CloudEvent: %w", err)
		}
		pm.Value = sarama.ByteEncoder(body)
		header(ContentTypeHeader, events.ContentTypeCloudEvents)
	default:
		pm.Headers = make([]sarama.RecordHeader, 0, len(md)+1)
		header(UUIDHeader, msg.UUID)
		for k, v := range md {
			header(k, v)
		}
	}
	return pm, nil
}

// errNoRecord is returned for a nil record.
var errNoRecord = errors.New("kafka: nil record")

// unmarshal decodes a record in any wire form into eventkit form: headers
// become metadata; the content-type header fills content_type when no header
// does; events.Canonicalize reads CloudEvents attributes and structured
// events; the record key fills partition_key and the record timestamp
// occurred_at when still missing; the UUID is the UUID header, else the
// event id.
func unmarshal(km *sarama.ConsumerMessage) (*message.Message, error) {
	if km == nil {
		return nil, errNoRecord
	}
	msg := message.NewMessage("", km.Value)
	md := msg.Metadata
	contentType := ""
	for _, h := range km.Headers {
		if h == nil {
			continue
		}
		switch k := string(h.Key); k {
		case UUIDHeader:
			msg.UUID = string(h.Value)
		case ContentTypeHeader:
			contentType = string(h.Value)
		default:
			md[k] = string(h.Value)
		}
	}
	if md[events.KeyContentType] == "" && contentType != "" {
		md[events.KeyContentType] = contentType
	}
	_ = events.Canonicalize(msg) // an error is the registry's to report
	if md[events.KeyPartitionKey] == "" && len(km.Key) > 0 {
		md[events.KeyPartitionKey] = string(km.Key)
	}
	if md[events.KeyOccurredAt] == "" && !km.Timestamp.IsZero() && km.Timestamp.Unix() > 0 {
		md[events.KeyOccurredAt] = km.Timestamp.UTC().Format(time.RFC3339Nano)
	}
	if msg.UUID == "" {
		msg.UUID = md[events.KeyEventID]
	}
	return msg, nil
}
