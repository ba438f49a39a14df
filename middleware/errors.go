package middleware

import (
	"context"
	"errors"
	"fmt"
)

// Permanent marks err as permanent: Retry does not retry it and PoisonQueue
// dead-letters it at once with ReasonPermanent. events.IsPermanent reports
// true for the result. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// PermanentError is an error that retrying cannot fix. Make one with
// Permanent.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }

// Unwrap returns the marked error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent reports true; events.IsPermanent looks for this method.
func (e *PermanentError) Permanent() bool { return true }

// ErrInterrupted is in the chain of the error Retry returns when the message context ended while the message was being handled: the
// router is shutting down or the transport took the message back (a Kafka
// rebalance). Such a message is nacked for redelivery, never dead-lettered.
// The error also matches the context's own error (context.Canceled or
// context.DeadlineExceeded).
var ErrInterrupted = errors.New("middleware: handling interrupted")

type interruptedError struct {
	cause    error // the message context's error
	err      error // the last handler error, may be nil
	attempts int
}

func interrupted(ctx context.Context, err error, attempts int) error {
	return &interruptedError{cause: context.Cause(ctx), err: err, attempts: attempts}
}

func (e *interruptedError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("%v (%v) after %d attempt(s)", ErrInterrupted, e.cause, e.attempts)
	}
	return fmt.Sprintf("%v (%v) after %d attempt(s): %v", ErrInterrupted, e.cause, e.attempts, e.err)
}

func (e *interruptedError) Unwrap() []error {
	errs := []error{ErrInterrupted, e.cause}
	if e.err != nil {
		errs = append(errs, e.err)
	}
	return errs
}

// isInterrupted reports whether err or the message context says the
// handling was interrupted rather than failed.
func isInterrupted(ctx context.Context, err error) bool {
	return errors.Is(err, ErrInterrupted) || ctx.Err() != nil
}
