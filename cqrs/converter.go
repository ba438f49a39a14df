package cqrs

import (
	"context"
	"fmt"
)

// Converter turns a domain event D into an integration event I (seed:
// IDomainToIntegrationEventConverter). ok == false declines: the domain
// event has no integration counterpart this time, and nothing is published.
// A converter must be a pure function of its input.
type Converter[D, I any] func(D) (I, bool)

// Publisher publishes integration events. *Bus satisfies it, and so does
// the Bus that forwarder.Outbox.Bus binds to a transaction.
type Publisher interface {
	Publish(ctx context.Context, events ...any) error
}

// PublisherFunc adapts a function to Publisher, e.g. one that finds the
// caller's transaction in ctx and adds the events to the outbox in it:
//
//	cqrs.PublisherFunc(func(ctx context.Context, evts ...any) error {
//		tx, _ := middleware.TxFromContext(ctx)
//		return outbox.Add(ctx, tx, evts...)
//	})
type PublisherFunc func(ctx context.Context, events ...any) error

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, events ...any) error { return f(ctx, events...) }

// ConvertAndAdd returns a domain-event handler that converts each event with
// conv and publishes the integration event with pub (seed:
// AutoIntegrationEventHandler). Given the Bus of an outbox bound to the
// unit of work's transaction (forwarder.Outbox.Bus(tx)), the integration
// event is written in that transaction: it is relayed if and only if the
// domain change commits.
//
//	onOrderCreated := cqrs.ConvertAndAdd(orderCreatedToIntegration, outbox.Bus(tx))
//	err := onOrderCreated(ctx, domainEvent)
//
// The handler returns nil without publishing when conv declines, and pub's
// error, wrapped, otherwise; the caller should then roll the transaction
// back. ConvertAndAdd panics if conv or pub is nil: that is a wiring bug.
func ConvertAndAdd[D, I any](conv Converter[D, I], pub Publisher) func(ctx context.Context, event D) error {
	if conv == nil {
		panic("cqrs: ConvertAndAdd: converter is nil")
	}
	if pub == nil {
		panic("cqrs: ConvertAndAdd: publisher is nil")
	}
	return func(ctx context.Context, event D) error {
		ie, ok := conv(event)
		if !ok {
			return nil
		}
		if err := pub.Publish(ctx, ie); err != nil {
			return fmt.Errorf("cqrs: publish %T converted from %T: %w", ie, event, err)
		}
		return nil
	}
}
