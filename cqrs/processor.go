package cqrs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	wmcqrs "github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/middleware"
)

// SubscriberFactory returns a subscriber for a durable consumer group.
// transports.Transport's Subscriber method fits.
type SubscriberFactory func(group string) (message.Subscriber, error)

// ProcessorConfig configures a Processor. Registry is required; the zero value
// of every other field is its documented default.
type ProcessorConfig struct {
	// Registry decodes events. Required.
	Registry *events.Registry
	// Topic maps an event name to the topic a handler subscribes to.
	// Defaults to EventNameTopic; use the same mapping as the Bus.
	Topic TopicFunc
	// Logger receives debug lines for skipped messages. Defaults to
	// discarding.
	Logger *slog.Logger
	// BrokerHealth, if set, is checked by Health: whether the broker is
	// reachable. transports.Transport.Health fits. Defaults to nil (not
	// checked).
	BrokerHealth func(ctx context.Context) error
	// DeadLetter publishes what a handler can never handle, so that one bad
	// message never blocks its queue or spins on it: a message that does
	// not decode into a registered event (it names no event, or one not
	// registered; it has no event id, an unsupported version, a payload
	// that does not decode) and a handler's permanent error
	// (events.IsPermanent, middleware.Permanent). Each is published to the
	// dead-letter topic of its topic (middleware.DeadLetterTopic) with the
	// dead-letter metadata of middleware.PoisonQueue, whose dlq_reason names
	// the cause, and acked. The dead-letter topic is first initialised for
	// middleware.DeadLetterGroupDefault through the processor's subscriber
	// factory (on AMQP this declares its queue). Pass the transport's
	// publisher.
	//
	// Under a middleware.PoisonQueue (middleware.Default on the router or
	// the handler) the processor returns those errors to it instead, so
	// that the chain's retries, inbox and dead letters stay as they are.
	// Required.
	DeadLetter message.Publisher
}

// Processor adds typed handlers to a Watermill router.
type Processor struct {
	router  *message.Router
	subs    SubscriberFactory
	reg     *events.Registry
	topic   TopicFunc
	log     *slog.Logger
	skipped atomic.Int64

	brokerHealth func(ctx context.Context) error
	deadLetters  *middleware.PoisonQueue

	mu    sync.Mutex
	names map[string]bool
	subsc []Subscription
}

// Subscription is one handler added to a Processor: the event it consumes
// and the topic it subscribes to. It is the consumer side of a service's
// wiring, as contracts.Consume records it.
type Subscription struct {
	// Handler is the handler's name, which is its consumer group.
	Handler string
	// Event is the registered name of the event it handles.
	Event string
	// Topic is the topic it subscribes to (ProcessorConfig.Topic).
	Topic string
}

// NewProcessor returns a Processor that adds handlers to router and creates
// one subscriber per handler with subscribers(handlerName).
func NewProcessor(router *message.Router, subscribers SubscriberFactory, cfg ProcessorConfig) (*Processor, error) {
	switch {
	case router == nil:
		return nil, errors.New("cqrs: router is nil")
	case subscribers == nil:
		return nil, errors.New("cqrs: subscriber factory is nil")
	case cfg.Registry == nil:
		return nil, errors.New("cqrs: ProcessorConfig.Registry is required")
	case cfg.DeadLetter == nil:
		return nil, errors.New("cqrs: ProcessorConfig.DeadLetter is required: a message that cannot be decoded (no event name or id, " +
			"an unknown event, a bad version or payload) is dead-lettered with it, instead of being redelivered forever; pass the transport's publisher")
	}
	if cfg.Topic == nil {
		cfg.Topic = EventNameTopic
	}
	pq, err := middleware.NewPoisonQueue(cfg.DeadLetter, middleware.PoisonQueueConfig{
		Subscribers: middleware.SubscriberFactory(subscribers),
		Logger:      cfg.Logger, // nil: slog.Default(), a dead letter is worth an error line
		Filter:      events.IsPermanent,
	})
	if err != nil {
		return nil, fmt.Errorf("cqrs: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Processor{router: router, subs: subscribers, reg: cfg.Registry, topic: cfg.Topic, log: cfg.Logger, names: map[string]bool{},
		brokerHealth: cfg.BrokerHealth, deadLetters: pq}, nil
}

// AddHandlers adds each handler to the router as a consumer handler named
// after it, subscribed to the topic of its event. It fails, adding none of
// the remaining handlers, if a handler name is invalid or already used, its
// event type is not registered, or the subscriber cannot be created. Call it
// before router.Run, or call router.RunHandlers afterwards.
func (p *Processor) AddHandlers(handlers ...Handler) error {
	for _, h := range handlers {
		if _, err := p.add(h); err != nil {
			return err
		}
	}
	return nil
}

// AddHandler adds one handler and returns its router handler, to which
// handler-level middleware can be added.
func (p *Processor) AddHandler(h Handler) (*message.Handler, error) { return p.add(h) }

// Skipped returns how many messages of other registered event types arrived
// on handlers' topics and were acked without being handled.
func (p *Processor) Skipped() int64 { return p.skipped.Load() }

func (p *Processor) add(h Handler) (*message.Handler, error) {
	if h == nil {
		return nil, errors.New("cqrs: handler is nil")
	}
	name := h.HandlerName()
	if !events.ValidName(name) {
		return nil, fmt.Errorf("cqrs: invalid handler name %q (1-200 of A-Z a-z 0-9 . _ : -)", name)
	}
	eventName, err := p.reg.Name(h.NewEvent())
	if err != nil {
		return nil, fmt.Errorf("cqrs: handler %s: %w", name, err)
	}
	topic := p.topic(eventName)
	if topic == "" {
		return nil, fmt.Errorf("cqrs: handler %s: Topic returned an empty topic for %s", name, eventName)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if _, dup := p.router.Handlers()[name]; dup || p.names[name] {
		return nil, fmt.Errorf("cqrs: handler name %q is already used", name)
	}
	sub, err := p.subs(name)
	if err != nil {
		return nil, fmt.Errorf("cqrs: subscriber for handler %s: %w", name, err)
	}
	p.names[name] = true
	p.subsc = append(p.subsc, Subscription{Handler: name, Event: eventName, Topic: topic})
	return p.router.AddConsumerHandler(name, topic, sub, p.handlerFunc(h, eventName)), nil
}

// Subscriptions returns the handlers added so far, in the order they were
// added.
func (p *Processor) Subscriptions() []Subscription {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.subsc)
}

// DeadLettered returns how many messages the processor dead-lettered itself
// (ProcessorConfig.DeadLetter), outside any PoisonQueue.
func (p *Processor) DeadLettered() int64 { return p.deadLetters.DeadLettered() }

func (p *Processor) handlerFunc(h Handler, eventName string) message.NoPublishHandlerFunc {
	handle := p.decodeAndHandle(h, eventName)
	deadLettering := p.deadLetters.Middleware(func(msg *message.Message) ([]*message.Message, error) {
		return nil, handle(msg)
	})
	return func(msg *message.Message) error {
		if middleware.UnderPoisonQueue(msg.Context()) {
			return handle(msg)
		}
		_, err := deadLettering(msg)
		return err
	}
}

func (p *Processor) decodeAndHandle(h Handler, eventName string) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		_ = events.Canonicalize(msg) // DecodeInto reports its error
		if got := msg.Metadata.Get(events.KeyName); got != eventName && got != "" {
			if _, err := p.reg.Version(got); err == nil {
				p.skipped.Add(1)
				p.log.Debug("eventkit: skipping event of another type",
					slog.String("handler", h.HandlerName()),
					slog.String("event_name", got),
					slog.String("event_id", msg.UUID))
				return nil
			}
		}
		ev := h.NewEvent()
		env, err := p.reg.DecodeInto(msg, ev)
		if err != nil {
			return fmt.Errorf("cqrs: handler %s: %w", h.HandlerName(), err)
		}
		ctx := events.ContextWithEnvelope(wmcqrs.CtxWithOriginalMessage(msg.Context(), msg), env)
		return h.Handle(ctx, ev)
	}
}
