package cqrs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/tracing"
)

// TopicFunc maps an event name to a topic.
type TopicFunc func(eventName string) string

// EventNameTopic is the default TopicFunc: the topic is the event name.
func EventNameTopic(eventName string) string { return eventName }

// BusConfig configures a Bus. Registry is required; the zero value of every
// other field is its documented default.
type BusConfig struct {
	// Registry encodes events and knows their names and versions. Required.
	Registry *events.Registry
	// Source is written to the source header: the producing service or
	// bounded context. Defaults to "" (header not written).
	Source string
	// Topic maps an event name to the topic it is published to. Defaults to
	// EventNameTopic. Processors must use the same mapping.
	Topic TopicFunc
	// TracerProvider turns on OpenTelemetry tracing of Publish: a producer
	// "send <topic>" span per event, a child of the span of the publishing
	// context, whose W3C trace context (events.KeyTraceParent,
	// events.KeyTraceState) the message carries to the consumer's
	// middleware.Tracing span. Defaults to nil: tracing off, nothing added.
	// (Events written to an outbox are traced by OutboxConfig.TracerProvider
	// instead.)
	TracerProvider trace.TracerProvider
	// MessagingSystem is the messaging.system attribute of the spans, e.g.
	// "rabbitmq" (transports.Transport.MessagingSystem). Defaults to ""
	// (attribute left out).
	MessagingSystem string
	// Validate, if set, checks each encoded event before anything is
	// published (contracts.Validator.ValidateMessage fits: the payload
	// against its event's schema). Its error fails Publish and Messages,
	// wrapped, with nothing published. Defaults to nil: no check.
	Validate func(msg *message.Message) error
}

func (c BusConfig) validate() error {
	if c.Registry == nil {
		return errors.New("cqrs: BusConfig.Registry is required")
	}
	return nil
}

// Bus publishes typed integration events. It is safe for concurrent use and
// cheap to create (one per transaction is fine).
type Bus struct {
	pub    message.Publisher
	reg    *events.Registry
	src    string
	topic  TopicFunc
	tracer trace.Tracer // nil when tracing is off
	system string
	check  func(*message.Message) error // nil: no validation
}

// NewBus returns a Bus publishing to pub. It returns an error if pub is nil
// or cfg is invalid.
func NewBus(pub message.Publisher, cfg BusConfig) (*Bus, error) {
	if pub == nil {
		return nil, errors.New("cqrs: publisher is nil")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Topic == nil {
		cfg.Topic = EventNameTopic
	}
	return &Bus{pub: pub, reg: cfg.Registry, src: cfg.Source, topic: cfg.Topic,
		tracer: tracing.Tracer(cfg.TracerProvider), system: cfg.MessagingSystem, check: cfg.Validate}, nil
}

// Publish encodes each event (a registered T or *T), stamps its envelope from
// ctx (see events.Registry.NewMessage) and publishes it. Consecutive events
// bound for the same topic go in one Publisher.Publish call, so a batching
// publisher (the outbox, AMQP, Kafka) writes them together and in order.
//
// A PublishOption among the events (DeliverAt, DeliverAfter) schedules them:
// they carry events.KeyDeliverAt and are delivered no earlier, which needs a
// Scheduler publisher (the outbox; mem://); other publishers make Publish
// fail with ErrScheduleNotSupported, before publishing anything.
//
// It returns events.ErrNotRegistered (wrapped) for an unregistered type, or
// the error of BusConfig.Validate, before publishing anything, or the
// publisher's error. On a publisher
// error, events of earlier calls may have been published: the transports
// deliver at least once.
func (b *Bus) Publish(ctx context.Context, evts ...any) error {
	msgs, topics, err := b.Messages(ctx, evts...)
	if err != nil {
		return err
	}
	if s, ok := b.pub.(Scheduler); (!ok || !s.SchedulesDelivery()) && scheduled(msgs) {
		return ErrScheduleNotSupported
	}
	for start := 0; start < len(msgs); {
		end := start + 1
		for end < len(msgs) && topics[end] == topics[start] {
			end++
		}
		endSpans := b.traceSend(ctx, topics[start], msgs[start:end])
		err := b.pub.Publish(topics[start], msgs[start:end]...)
		endSpans(err)
		if err != nil {
			return fmt.Errorf("cqrs: publish to %q: %w", topics[start], err)
		}
		start = end
	}
	return nil
}

// traceSend starts a producer "send" span per message, a child of the span
// of ctx, and injects its context into the message metadata. The returned
// func ends the spans with the outcome of the publish. Without a tracer it
// does nothing.
func (b *Bus) traceSend(ctx context.Context, topic string, msgs []*message.Message) func(error) {
	if b.tracer == nil {
		return func(error) {}
	}
	return tracing.StartProducers(ctx, b.tracer, "send", b.system, msgs, func(int) string { return topic })
}

// Messages encodes events into messages and their topics without publishing
// them, exactly as Publish would.
func (b *Bus) Messages(ctx context.Context, evts ...any) ([]*message.Message, []string, error) {
	evts, due, err := splitOptions(evts)
	if err != nil {
		return nil, nil, err
	}
	msgs := make([]*message.Message, len(evts))
	topics := make([]string, len(evts))
	for i, e := range evts {
		msg, err := b.reg.NewMessage(ctx, e, b.src)
		if err != nil {
			return nil, nil, fmt.Errorf("cqrs: event %d: %w", i, err)
		}
		if b.check != nil {
			if err := b.check(msg); err != nil {
				return nil, nil, fmt.Errorf("cqrs: event %d: %w", i, err)
			}
		}
		if !due.IsZero() {
			msg.Metadata.Set(events.KeyDeliverAt, due.UTC().Format(time.RFC3339Nano))
		}
		msgs[i] = msg
		topics[i] = b.topic(msg.Metadata.Get(events.KeyName))
		if topics[i] == "" {
			return nil, nil, fmt.Errorf("cqrs: event %d: Topic returned an empty topic for %s", i, msg.Metadata.Get(events.KeyName))
		}
	}
	return msgs, topics, nil
}
