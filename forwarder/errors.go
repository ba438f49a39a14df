package forwarder

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"

	amqp "github.com/rabbitmq/amqp091-go"
)

// How the relay reads a Publisher's errors.
//
// A Publisher returns nil from Publish(topic, msgs...) only when the broker
// confirmed every message (AMQP publisher confirms, Kafka acks). Otherwise
// the relay needs two facts: which messages were not confirmed, and whether
// the broker was unavailable (an outage or back-pressure: retry later, do
// not count an attempt) or refused those messages (count an attempt, park
// the row as failed after MaxAttempts).
//
// Which messages: an error in the chain with a method
//
//	NotConfirmed() []string
//
// lists the UUIDs of the messages the broker did not confirm; the others
// were confirmed. Without it, the relay publishes the messages of the call
// again one by one to find out.
//
// Why: RelayConfig.Unavailable, by default IsUnavailable. An error that is
// neither unavailable nor known to be about the message (see
// isMessageFault) counts as a rejection only when the broker confirmed a
// later message of the same round; otherwise the relay cannot tell it from
// an outage and treats it as one, so an outage never uses up retries.

// notConfirmed is the optional interface of a Publish error naming the
// messages the broker did not confirm.
type notConfirmed interface {
	NotConfirmed() []string
}

// IsUnavailable reports whether err, returned by a Publisher, means the
// broker could not take messages now, so that the relay retries the same
// messages later without counting an attempt. That is the case when an
// error in the chain:
//
//   - has an Unavailable() bool method returning true (the convention for
//     publishers: return true for a lost connection and for back-pressure
//     such as an AMQP nack; false for a message the broker refuses);
//   - is a context cancellation or deadline, a net.Error, io.EOF,
//     io.ErrUnexpectedEOF, net.ErrClosed, or a refused, reset or broken
//     connection;
//   - is an *amqp091.Error other than 311 content too large, 312 no route,
//     313 no consumers and 406 precondition failed;
//   - is one of stock watermill-amqp's "not connected to AMQP", "pub/sub is
//     connection closed" or "delivery not confirmed" (a nack) errors.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var u interface{ Unavailable() bool }
	if errors.As(err, &u) {
		return u.Unavailable()
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case amqp.ContentTooLarge, amqp.NoRoute, amqp.NoConsumers, amqp.PreconditionFailed:
			return false
		}
		return true
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED),
		errors.As(err, &ne):
		return true
	}
	s := err.Error()
	return strings.Contains(s, "not connected to AMQP") ||
		strings.Contains(s, "pub/sub is connection closed") ||
		strings.Contains(s, "delivery not confirmed for message")
}

// isMessageFault reports whether err is known to be about the message
// itself: an error with Permanent() bool returning true, or an AMQP
// "content too large", "no route" or "no consumers".
func isMessageFault(err error) bool {
	var p interface{ Permanent() bool }
	if errors.As(err, &p) && p.Permanent() {
		return true
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case amqp.ContentTooLarge, amqp.NoRoute, amqp.NoConsumers:
			return true
		}
	}
	return false
}

func slogErr(err error) slog.Attr { return slog.String("error", err.Error()) }
