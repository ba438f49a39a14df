package middleware

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Observer receives the consumer chain's measurements; package metrics
// implements it with Prometheus collectors. Each method gets the message
// context, from which message.HandlerNameFromCtx and
// message.SubscribeTopicFromCtx give the handler and the topic. Methods are
// called synchronously on the message path, so they must be fast and safe
// for concurrent use. DefaultConfig.Observer wires one into every part of
// the chain.
type Observer interface {
	// Handled is called after every attempt of the handler with its
	// duration and error (nil on success; a panic is a *PanicError).
	Handled(ctx context.Context, took time.Duration, err error)
	// Retried is called before every retry, with the attempt that failed.
	Retried(ctx context.Context, attempt int)
	// DeadLettered is called for every message published to a dead-letter
	// topic.
	DeadLettered(ctx context.Context, reason Reason)
	// Duplicate is called for every message the inbox dropped as a
	// duplicate.
	Duplicate(ctx context.Context)
}

// Measure returns a middleware that reports each call of the handlers it
// wraps to obs.Handled. Default puts it right around the handler (below
// Deduplicate), so it measures each attempt of the handler itself.
func Measure(obs Observer) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			start := time.Now()
			out, err := h(msg)
			obs.Handled(msg.Context(), time.Since(start), err)
			return out, err
		}
	}
}
