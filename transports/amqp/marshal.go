package amqp

import (
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/b2131a45/eventkit/events"
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

// CloudEventsHeaderPrefix prefixes the CloudEvents attributes of a message
// written in binary mode (events.WireCloudEvents), as the CloudEvents AMQP
// binding names its application properties: "cloudEvents:id"…
const CloudEventsHeaderPrefix = "cloudEvents:"

// marshal encodes msg in the wire form w. In every form it sets the
// standard properties from the envelope — message-id (event id), type
// (event name), content-type, timestamp (occurred at, in seconds),
// correlation-id and app-id (source) — and the UUID header and persistent
// delivery, as watermill-amqp's DefaultMarshaler does. The headers are:
//
//   - WireEventkit: the metadata as is;
//   - WireCloudEvents: the envelope as "cloudEvents:"-prefixed attributes,
//     the rest of the metadata as is; content-type is datacontenttype;
//   - WireCloudEventsStructured: the rest of the metadata; the body is the
//     structured event and content-type application/cloudevents+json.
func marshal(w events.Wire, msg *message.Message) (amqp.Publishing, error) {
	md := msg.Metadata
	p := amqp.Publishing{
		Body:          msg.Payload,
		DeliveryMode:  amqp.Persistent,
		MessageId:     firstOf(md[events.KeyEventID], msg.UUID),
		Type:          md[events.KeyName],
		ContentType:   md[events.KeyContentType],
		CorrelationId: md[events.KeyCorrelationID],
		AppId:         md[events.KeySource],
	}
	if at := md[events.KeyOccurredAt]; at != "" {
		if t, err := events.ParseTime(at); err == nil {
			p.Timestamp = t
		}
	}
	switch w {
	case events.WireCloudEvents, events.WireCloudEventsStructured:
		ce := events.CloudEventOf(msg)
		p.Headers = make(amqp.Table, len(ce.Headers)+len(ce.Attributes)+1)
		for k, v := range ce.Headers {
			p.Headers[k] = v
		}
		if w == events.WireCloudEvents {
			for k, v := range ce.Attributes {
				p.Headers[CloudEventsHeaderPrefix+k] = v
			}
			p.ContentType = ce.DataContentType
		} else {
			body, err := ce.MarshalStructured()
			if err != nil {
				return amqp.Publishing{}, fmt.Errorf("amqp: structured CloudEvent of message %s: %w", msg.UUID, err)
			}
			p.Body = body
			p.ContentType = events.ContentTypeCloudEvents
		}
	default:
		p.Headers = make(amqp.Table, len(md)+1)
		for k, v := range md {
			p.Headers[k] = v
		}
	}
	p.Headers[UUIDHeader] = msg.UUID
	return p, nil
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// unmarshal decodes a delivery in any wire form into eventkit form:
//
//  1. the headers become metadata: strings as they are, other scalars as
//     text, timestamps in RFC 3339; tables and arrays, such as the broker's
//     x-death, are left out (unlike watermill-amqp's DefaultMarshaler,
//     which rejects non-string headers and so requeues the message
//     forever). The application properties and properties of a message an
//     AMQP 1.0 client sent through RabbitMQ 3.x (its
//     x-amqp-1.0-app-properties and x-amqp-1.0-properties headers) are
//     decoded the same way;
//  2. the content-type property fills content_type when no header does;
//  3. events.Canonicalize reads CloudEvents attributes and structured
//     events;
//  4. the standard properties fill what is still missing: message-id the
//     event id, type the name, timestamp occurred_at, correlation-id and
//     app-id the source;
//  5. the UUID is the UUID header, else the event id.
func unmarshal(d amqp.Delivery) *message.Message {
	msg := message.NewMessage("", d.Body)
	md := msg.Metadata
	viaAMQP10 := false
	for k, v := range d.Headers {
		switch k {
		case UUIDHeader:
			msg.UUID, _ = v.(string)
			continue
		case amqp10AppProperties, amqp10Properties:
			viaAMQP10 = true
			continue
		}
		if s, ok := headerText(v); ok {
			md[k] = s
		}
	}
	props := amqp10Props{}
	if viaAMQP10 {
		props = decodeAMQP10Headers(d.Headers, md)
	}
	contentType := firstOf(d.ContentType, props.contentType)
	if md[events.KeyContentType] == "" && contentType != "" {
		md[events.KeyContentType] = contentType
	}
	_ = events.Canonicalize(msg) // an error is the registry's to report
	fill := func(key, v string) {
		if v != "" && md[key] == "" {
			md[key] = v
		}
	}
	fill(events.KeyEventID, firstOf(d.MessageId, props.messageID))
	if !viaAMQP10 { // RabbitMQ 3.x sets type to the AMQP 1.0 body section kind
		fill(events.KeyName, d.Type)
	}
	fill(events.KeyCorrelationID, firstOf(d.CorrelationId, props.correlationID))
	fill(events.KeySource, d.AppId)
	if md[events.KeyOccurredAt] == "" { // formatted only when the headers lack it
		switch {
		case !props.creationTime.IsZero():
			md[events.KeyOccurredAt] = props.creationTime.Format(time.RFC3339Nano)
		case !d.Timestamp.IsZero() && !viaAMQP10: // RabbitMQ 3.x mistakes AMQP 1.0's milliseconds for seconds
			md[events.KeyOccurredAt] = d.Timestamp.UTC().Format(time.RFC3339Nano)
		}
	}
	if msg.UUID == "" {
		msg.UUID = md[events.KeyEventID]
	}
	if d.Redelivered {
		md[RedeliveredKey] = "true"
	}
	return msg
}

// headerText returns a header value as metadata text; false for tables,
// arrays and nulls, which have none.
func headerText(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano), true
	case bool, int8, uint8, int16, uint16, int32, uint32, int64, uint64, int, float32, float64, amqp.Decimal:
		return fmt.Sprint(v), true
	}
	return "", false
}
