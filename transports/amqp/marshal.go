package amqp

import (
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Header keys shared with watermill-amqp.
const (
	// UUIDHeader carries the message UUID (watermill-amqp's
	// DefaultMessageUUIDHeaderKey).
	UUIDHeader = "_watermill_message_uuid"
	// RedeliveredKey is set to "true" in the metadata of a message the
	// broker delivers again (watermill-amqp's MetadataRedeliveredKey).
	RedeliveredKey = "_watermill_amqp_redelivered"
)

// marshal encodes msg exactly as watermill-amqp's DefaultMarshaler does:
// metadata as string headers, the UUID in UUIDHeader, persistent.
func marshal(msg *message.Message) amqp.Publishing {
	headers := make(amqp.Table, len(msg.Metadata)+1)
	for k, v := range msg.Metadata {
		headers[k] = v
	}
	headers[UUIDHeader] = msg.UUID
	return amqp.Publishing{
		Headers:      headers,
		Body:         msg.Payload,
		DeliveryMode: amqp.Persistent,
	}
}

// unmarshal decodes a delivery. It reads what watermill-amqp writes, and
// unlike watermill-amqp's DefaultMarshaler it does not reject headers that
// are not strings (which would requeue the message forever): scalar values
// are formatted as text, and tables and arrays, such as the broker's
// x-death, are left out of the metadata.
func unmarshal(d amqp.Delivery) *message.Message {
	id, _ := d.Headers[UUIDHeader].(string)
	msg := message.NewMessage(id, d.Body)
	for k, v := range d.Headers {
		if k == UUIDHeader {
			continue
		}
		switch v := v.(type) {
		case string:
			msg.Metadata[k] = v
		case []byte:
			msg.Metadata[k] = string(v)
		case time.Time:
			msg.Metadata[k] = v.UTC().Format(time.RFC3339Nano)
		case bool, int8, uint8, int16, uint16, int32, uint32, int64, uint64, int, float32, float64, amqp.Decimal:
			msg.Metadata[k] = fmt.Sprint(v)
		}
	}
	if d.Redelivered {
		msg.Metadata[RedeliveredKey] = "true"
	}
	return msg
}
