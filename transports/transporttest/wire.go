package transporttest

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/testenv"
)

// Record is a message as it lies on the broker, read with the broker's own
// client rather than through eventkit.
type Record struct {
	// Headers are the record's headers as text (AMQP headers, Kafka record
	// headers).
	Headers map[string]string
	// Properties are the broker's standard properties that are set, by
	// the names Binding.Properties uses (for example AMQP "message-id",
	// Kafka "key"); timestamps in RFC 3339.
	Properties map[string]string
	// Body is the record's body (AMQP) or value (Kafka).
	Body []byte
}

// Binding describes how a transport lays events on its broker, for
// RunWire to check.
type Binding struct {
	// AttributePrefix prefixes the CloudEvents attributes of a record in
	// binary mode: "cloudEvents:" (AMQP), "ce_" (Kafka).
	AttributePrefix string
	// ContentType is the Record.Properties name, or with a "header:"
	// prefix the header name, of the payload's media type: "content-type"
	// (AMQP's property), "header:content-type" (Kafka).
	ContentType string
	// Properties maps envelope keys to the standard property that carries
	// them in every wire form, e.g. events.KeyEventID → "message-id".
	// Timestamps are compared to the second.
	Properties map[string]string
}

// WireConfig configures RunWire.
type WireConfig struct {
	// Open returns a new transport that writes in the wire form w.
	Open func(t *testing.T, w events.Wire) Transport
	// Reader is called before anything is published to topic and returns
	// a function that returns the next record of topic, read with the
	// broker's own client (failing the test after a timeout).
	Reader func(t *testing.T, topic string) (next func() Record)
	// Binding is how the transport lays events on the broker.
	Binding Binding
	// Features are the transport's, for reading back through it.
	Features Features
}

// wireEvent is a message with every envelope key, a foreign CloudEvents
// attribute, a custom header and a JSON payload.
func wireEvent() *message.Message {
	id := watermill.NewUUID()
	msg := message.NewMessage(id, []byte(`{"order_id":"o-42","total_cents":4990}`))
	msg.Metadata = message.Metadata{
		events.KeyName:          "orders.order_created",
		events.KeyEventID:       id,
		events.KeyVersion:       "2",
		events.KeyOccurredAt:    "2026-01-02T03:04:05.123456789Z",
		events.KeyCorrelationID: watermill.NewUUID(),
		events.KeyCausationID:   watermill.NewUUID(),
		events.KeySource:        "orders",
		events.KeyPartitionKey:  "order-42",
		events.KeyContentType:   "application/json",
		events.KeyTraceParent:   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"ce_subject":            "order/o-42",
		"tenant":                "acme",
	}
	return msg
}

// RunWire checks, in each wire form, what a transport writes on the broker
// (read with the broker's own client) and that the transport reads it back
// into the same envelope:
//
//   - every form sets the standard properties of Binding.Properties;
//   - WireEventkit writes every metadata key as a header;
//   - WireCloudEvents writes specversion 1.0 and each envelope key as the
//     attribute of events.CloudEventOf with the binding's prefix, the
//     payload's media type as the content type, other metadata as plain
//     headers, and the payload as is;
//   - WireCloudEventsStructured writes a body that events.ParseStructured
//     reads back into the same attributes and data, media type
//     application/cloudevents+json, and other metadata as plain headers.
func RunWire(t *testing.T, cfg WireConfig) {
	if cfg.Features.Timeout == 0 {
		cfg.Features.Timeout = 30 * time.Second
	}
	for _, w := range []events.Wire{events.WireEventkit, events.WireCloudEvents, events.WireCloudEventsStructured} {
		t.Run(string(w), func(t *testing.T) {
			t.Parallel()
			tr := cfg.Open(t, w)
			t.Cleanup(func() {
				if err := tr.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			s := &suite{t: t, tr: tr, f: cfg.Features, topic: testenv.Name(t, "wire")}
			s.prepare("g")
			next := cfg.Reader(t, s.topic)
			msg := wireEvent()
			s.publish(msg)
			rec := next()
			checkProperties(t, cfg.Binding, msg, rec)
			switch w {
			case events.WireEventkit:
				for k, v := range msg.Metadata {
					if got := rec.Headers[k]; got != v {
						t.Errorf("header %q = %q, want %q", k, got, v)
					}
				}
				if !bytes.Equal(rec.Body, msg.Payload) {
					t.Errorf("body %q, want the payload %q", rec.Body, msg.Payload)
				}
			case events.WireCloudEvents:
				checkBinary(t, cfg.Binding, msg, rec)
			case events.WireCloudEventsStructured:
				checkStructured(t, cfg.Binding, msg, rec)
			}

			// Read back through the transport: the same envelope.
			got := s.next(s.subscribe(s.subscriber("g")))
			got.Ack()
			if got.UUID != msg.UUID {
				t.Errorf("UUID %q, want %q", got.UUID, msg.UUID)
			}
			if !bytes.Equal(got.Payload, msg.Payload) {
				t.Errorf("payload %q, want %q", got.Payload, msg.Payload)
			}
			for _, k := range slices.Sorted(maps.Keys(msg.Metadata)) {
				if g, want := got.Metadata.Get(k), msg.Metadata.Get(k); g != want {
					t.Errorf("read back: metadata %q = %q, want %q", k, g, want)
				}
			}
		})
	}
}

func contentTypeOf(b Binding, rec Record) string {
	if h, ok := strings.CutPrefix(b.ContentType, "header:"); ok {
		return rec.Headers[h]
	}
	return rec.Properties[b.ContentType]
}

func checkProperties(t *testing.T, b Binding, msg *message.Message, rec Record) {
	t.Helper()
	for key, prop := range b.Properties {
		want, got := msg.Metadata.Get(key), rec.Properties[prop]
		if key == events.KeyOccurredAt {
			wt, err1 := events.ParseTime(want)
			gt, err2 := events.ParseTime(got)
			if err1 != nil || err2 != nil || !wt.Truncate(time.Second).Equal(gt.Truncate(time.Second)) {
				t.Errorf("property %s = %q, want %s to the second", prop, got, want)
			}
			continue
		}
		if got != want {
			t.Errorf("property %s = %q, want %q (%s)", prop, got, want, key)
		}
	}
}

func checkBinary(t *testing.T, b Binding, msg *message.Message, rec Record) {
	t.Helper()
	want := events.CloudEventOf(msg)
	if got := rec.Headers[b.AttributePrefix+"specversion"]; got != events.CloudEventsSpecVersion {
		t.Errorf("%sspecversion = %q, want %s", b.AttributePrefix, got, events.CloudEventsSpecVersion)
	}
	for attr, v := range want.Attributes {
		if got := rec.Headers[b.AttributePrefix+attr]; got != v {
			t.Errorf("%s%s = %q, want %q", b.AttributePrefix, attr, got, v)
		}
	}
	for _, attr := range []string{"id", "type", "source", "time", events.CloudEventsCorrelationID, events.CloudEventsCausationID,
		events.CloudEventsVersion, events.CloudEventsPartitionKey, "traceparent", "subject"} {
		if rec.Headers[b.AttributePrefix+attr] == "" {
			t.Errorf("no %s%s header", b.AttributePrefix, attr)
		}
	}
	for k := range msg.Metadata {
		if _, plain := rec.Headers[k]; plain && k != "tenant" && !strings.HasPrefix(k, events.CloudEventsExtensionPrefix) {
			t.Errorf("envelope key %q written as a plain header too", k)
		}
	}
	if got := rec.Headers["tenant"]; got != "acme" {
		t.Errorf("custom header tenant = %q, want it as a plain header", got)
	}
	if got := contentTypeOf(b, rec); got != msg.Metadata.Get(events.KeyContentType) {
		t.Errorf("content type %q, want datacontenttype %q", got, msg.Metadata.Get(events.KeyContentType))
	}
	if !bytes.Equal(rec.Body, msg.Payload) {
		t.Errorf("body %q, want the payload %q", rec.Body, msg.Payload)
	}
}

func checkStructured(t *testing.T, b Binding, msg *message.Message, rec Record) {
	t.Helper()
	if got := contentTypeOf(b, rec); got != events.ContentTypeCloudEvents {
		t.Errorf("content type %q, want %s", got, events.ContentTypeCloudEvents)
	}
	ce, err := events.ParseStructured(rec.Body)
	if err != nil {
		t.Fatalf("body is not a structured CloudEvent: %v\n%s", err, rec.Body)
	}
	want := events.CloudEventOf(msg)
	if !maps.Equal(ce.Attributes, want.Attributes) {
		t.Errorf("attributes %v, want %v", ce.Attributes, want.Attributes)
	}
	if ce.DataContentType != want.DataContentType {
		t.Errorf("datacontenttype %q, want %q", ce.DataContentType, want.DataContentType)
	}
	if !bytes.Equal(ce.Data, msg.Payload) {
		t.Errorf("data %q, want the payload %q", ce.Data, msg.Payload)
	}
	if !bytes.Contains(rec.Body, []byte(`"data":{`)) {
		t.Errorf("JSON payload not written as a JSON data value: %s", rec.Body)
	}
	if got := rec.Headers["tenant"]; got != "acme" {
		t.Errorf("custom header tenant = %q, want it as a plain header", got)
	}
}

// cloudEventsInput publishes events in CloudEvents form through the
// transport's publisher, as a foreign producer would lay them on the broker
// (binary attributes under the Kafka, AMQP and HTTP prefixes; structured,
// with JSON data, base64 data and a media-type parameter), and checks that
// subscribers read each into eventkit form.
func (s *suite) cloudEventsInput() {
	s.prepare("g")
	type input struct {
		msg     *message.Message
		payload string
	}
	binary := func(prefix string) input {
		id := watermill.NewUUID()
		m := message.NewMessage("", []byte(`{"n":1}`))
		m.Metadata = message.Metadata{
			prefix + "specversion":   "1.0",
			prefix + "id":            id,
			prefix + "type":          "orders.order_created",
			prefix + "source":        "node-orders",
			prefix + "time":          "2026-01-02T03:04:05.5+01:00",
			prefix + "correlationid": "corr-" + id,
			prefix + "eventversion":  "2",
			prefix + "partitionkey":  "order-7",
			events.KeyContentType:    "application/json; charset=utf-8",
		}
		return input{m, `{"n":1}`}
	}
	structured := func(doc string, payload string) input {
		m := message.NewMessage("", []byte(doc))
		m.Metadata.Set(events.KeyContentType, "application/cloudevents+json; charset=UTF-8")
		return input{m, payload}
	}
	ins := []input{
		binary("ce_"), binary("cloudEvents:"), binary("ce-"),
		structured(`{"specversion":"1.0","id":"s-1","type":"orders.order_created","source":"node-orders",`+
			`"time":"2026-01-02T03:04:05Z","correlationid":"corr-s-1","eventversion":2,"datacontenttype":"application/json","data":{"n":2}}`, `{"n":2}`),
		structured(`{"specversion":"1.0","id":"s-2","type":"orders.order_created","source":"node-orders",`+
			`"datacontenttype":"application/octet-stream","data_base64":"AAEC"}`, "\x00\x01\x02"),
	}
	for _, in := range ins {
		s.publish(in.msg)
	}
	got := s.receive(s.subscribe(s.subscriber("g")), len(ins))
	byPayload := map[string]*message.Message{}
	for _, m := range got {
		byPayload[string(m.Payload)] = m
	}
	for _, in := range ins {
		m, ok := byPayload[in.payload]
		if !ok {
			s.t.Errorf("no message with payload %q among %d", in.payload, len(got))
			continue
		}
		env, err := events.EnvelopeFromMessage(m)
		if err != nil {
			s.t.Errorf("envelope of %q: %v (metadata %v)", in.payload, err, m.Metadata)
			continue
		}
		if env.Name != "orders.order_created" || env.Source != "node-orders" || env.ID == "" || m.UUID != env.ID {
			s.t.Errorf("envelope %+v (UUID %q) of %q: name, source, id not read", env, m.UUID, in.payload)
		}
		if strings.HasPrefix(in.payload, "{") && (env.Version != 2 || env.CorrelationID != "corr-"+env.ID || env.OccurredAt.IsZero()) {
			s.t.Errorf("envelope %+v of %q: version, correlation or time not read", env, in.payload)
		}
	}
}
