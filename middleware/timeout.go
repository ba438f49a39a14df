package middleware

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// TimeoutDefault is the per-attempt timeout Default uses when
// DefaultConfig.Timeout is zero.
const TimeoutDefault = 30 * time.Second

// Timeout gives each call of the handlers it wraps a context that ends after
// d. Placed below Retry (as Default does), every attempt gets a fresh
// deadline: the message context is restored when the call returns, which is
// the bug Watermill's Timeout has with Retry (watermill#467).
//
// The handler must watch its context: Timeout does not abandon a handler
// that keeps running (that would leave its transaction in use). An error
// returned after the deadline wraps context.DeadlineExceeded when the handler
// passes the context's error on; PoisonQueue then records ReasonTimeout.
// A d of zero or less returns h unchanged.
func Timeout(d time.Duration) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		if d <= 0 {
			return h
		}
		return func(msg *message.Message) ([]*message.Message, error) {
			parent := msg.Context()
			ctx, cancel := context.WithTimeout(parent, d)
			msg.SetContext(ctx)
			defer func() {
				cancel()
				msg.SetContext(parent)
			}()
			return h(msg)
		}
	}
}
