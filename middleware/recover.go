package middleware

import (
	"fmt"
	"runtime/debug"

	"github.com/ThreeDotsLabs/watermill/message"
)

// PanicError is a panic recovered by Recover. It is an ordinary error: Retry
// retries it (unless RetryConfig.Retryable says otherwise) and PoisonQueue
// dead-letters it with ReasonPanic and the stack in KeyStack.
type PanicError struct {
	// Value is what the handler passed to panic.
	Value any
	// Stack is the goroutine's stack where the panic was recovered.
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Unwrap returns Value when it is an error, so errors.Is and errors.As see
// through a panic(err).
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}

// Recover turns a panic in the handlers it wraps into a *PanicError, so the
// message is nacked or dead-lettered instead of being lost with the goroutine.
// Messages the handler produced before panicking are dropped.
//
// Default puts Recover twice: outermost, so a panic anywhere in the chain
// (a DLQ publisher, a logger) becomes an error and the message is nacked and
// redelivered; and innermost, right around the handler, so a handler's panic
// is an error that Deduplicate rolls back, Retry retries and PoisonQueue
// dead-letters with ReasonPanic.
//
// Recover also gives the goroutine it runs on its whole stack up front (see
// handlerStack), which saves the chain's handlers repeated stack growth.
func Recover(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) (out []*message.Message, err error) {
		reserveStack()
		defer func() {
			if p := recover(); p != nil {
				out, err = nil, &PanicError{Value: p, Stack: debug.Stack()}
			}
		}()
		return h(msg)
	}
}
