package cqrs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	wmcqrs "github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
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

	mu    sync.Mutex
	names map[string]bool
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
	}
	if cfg.Topic == nil {
		cfg.Topic = EventNameTopic
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Processor{router: router, subs: subscribers, reg: cfg.Registry, topic: cfg.Topic, log: cfg.Logger, names: map[string]bool{},
		brokerHealth: cfg.BrokerHealth}, nil
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
	return p.router.AddConsumerHandler(name, topic, sub, p.handlerFunc(h, eventName)), nil
}

func (p *Processor) handlerFunc(h Handler, eventName string) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
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
