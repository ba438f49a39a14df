package cqrs

import (
	"context"

	wmcqrs "github.com/ThreeDotsLabs/watermill/components/cqrs"
)

// Handler handles one event type. It is Watermill's cqrs.EventHandler, so
// handlers built with wmcqrs.NewEventHandler work too. Handle is called
// concurrently and must be safe for that.
type Handler = wmcqrs.EventHandler

// NewHandler returns a Handler for events of type T. name is the handler's
// durable subscription: the AMQP queue suffix, the Kafka consumer group, the
// SQL consumer group. Renaming a handler makes it a new subscriber that
// starts from the transport's initial position.
func NewHandler[T any](name string, fn func(ctx context.Context, event *T) error) Handler {
	return wmcqrs.NewEventHandler(name, fn)
}
