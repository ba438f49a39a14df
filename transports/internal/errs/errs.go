// Package errs holds the errors shared by every transport. The transports
// packages re-export them, so errors.Is works whichever package a caller
// imports.
package errs

import (
	"errors"
	"fmt"
	"strings"
)

// ErrClosed is returned by Publish, Subscribe and Subscriber after Close.
var ErrClosed = errors.New("transport is closed")

// ErrNoGroup is returned when a subscriber is asked for with an empty
// consumer group name.
var ErrNoGroup = errors.New("consumer group name is empty")

// PublishError reports the messages of one Publish call that the broker did
// not confirm. The other messages of the call were confirmed. Publishing the
// whole call again is safe for at-least-once delivery but duplicates the
// confirmed ones.
type PublishError struct {
	Topic string
	// UUIDs of the messages that were not confirmed, in publish order.
	UUIDs []string
	// Err is why, e.g. a nack or an unroutable message.
	Err error
}

func (e *PublishError) Error() string {
	ids := e.UUIDs
	more := ""
	if len(ids) > 3 {
		ids, more = ids[:3], fmt.Sprintf(" and %d more", len(e.UUIDs)-3)
	}
	return fmt.Sprintf("publish to %q: %d message(s) not confirmed (%s%s): %v",
		e.Topic, len(e.UUIDs), strings.Join(ids, ", "), more, e.Err)
}

func (e *PublishError) Unwrap() error { return e.Err }

// NotConfirmed returns UUIDs. It is the convention by which eventkit's
// outbox relay learns which messages of a call to publish again.
func (e *PublishError) NotConfirmed() []string { return e.UUIDs }

// Sentinel is an error value that says what a failed publish means for a
// retry, by the conventions eventkit's outbox relay reads: Unavailable, the
// broker could not take the messages now (lost connection, timeout,
// back-pressure) and the same messages should be published again later;
// Permanent, the broker refused them and publishing them again as they are
// will fail again.
type Sentinel struct {
	msg         string
	unavailable bool
}

// Unavailable returns a sentinel for failures that a later retry can fix.
func Unavailable(msg string) *Sentinel { return &Sentinel{msg: msg, unavailable: true} }

// Refused returns a sentinel for messages the broker will not take.
func Refused(msg string) *Sentinel { return &Sentinel{msg: msg} }

func (s *Sentinel) Error() string { return s.msg }

// Unavailable reports whether publishing again later may succeed.
func (s *Sentinel) Unavailable() bool { return s.unavailable }

// Permanent reports whether the broker refused the messages themselves.
func (s *Sentinel) Permanent() bool { return !s.unavailable }
