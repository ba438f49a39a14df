package events

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrUnknownEvent is returned when a message names an event that is not
// registered. It is permanent.
var ErrUnknownEvent = errors.New("events: unknown event name")

// ErrUnsupportedVersion is returned when a payload version is newer than the
// registered one, or when no chain of upcasters leads from it to the
// registered version. It is permanent.
var ErrUnsupportedVersion = errors.New("events: unsupported event version")

// ErrNotRegistered is returned when publishing a Go type that has no
// registration. It is a programming error, not a message error.
var ErrNotRegistered = errors.New("events: type not registered")

// ErrPayloadTooLarge is wrapped by a *DecodeError when a payload exceeds the
// registry's MaxPayloadBytes.
var ErrPayloadTooLarge = errors.New("events: payload too large")

// ErrMissingHeader is wrapped by the *DecodeError of a message that names no
// event (no name header, CloudEvents type or AMQP type property) or has no
// event id (no event_id header, message UUID, CloudEvents id or AMQP
// message-id).
var ErrMissingHeader = errors.New("missing")

// errBadVersion wraps ErrUnsupportedVersion: a version header that is not a
// version is a bad version.
func errBadVersion(v string) error {
	return fmt.Errorf("%w: %s is not an integer ≥ 1", ErrUnsupportedVersion, strconv.Quote(v))
}

// DecodeError reports a message whose payload or envelope headers do not
// decode. It is permanent and wraps the cause.
type DecodeError struct {
	// Name and Version of the event, when known.
	Name    string
	Version int
	// Header is the metadata key that is bad, or "" when the payload is.
	Header string
	Err    error
}

func (e *DecodeError) Error() string {
	if errors.Is(e.Err, ErrMissingHeader) {
		switch e.Header {
		case KeyName:
			return "events: the message names no event: no \"name\" header, CloudEvents type or AMQP type property"
		case KeyEventID:
			return fmt.Sprintf("events: %s message has no event id: no \"event_id\" header, message UUID, CloudEvents id or AMQP message-id", e.Name)
		}
	}
	what := "payload"
	if e.Header != "" {
		what = "header " + strconv.Quote(e.Header)
	}
	if e.Name == "" {
		return fmt.Sprintf("events: cannot decode %s: %v", what, e.Err)
	}
	return fmt.Sprintf("events: cannot decode %s of %s v%d: %v", what, e.Name, e.Version, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Permanent marks the error as permanent for IsPermanent.
func (e *DecodeError) Permanent() bool { return true }

// IsPermanent reports whether err (or any error it wraps) is permanent:
// retrying the same message cannot succeed. That is ErrUnknownEvent,
// ErrUnsupportedVersion, *DecodeError, and any error in the chain with a
// Permanent() bool method that returns true (such as the errors made by
// middleware.Permanent).
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnknownEvent) || errors.Is(err, ErrUnsupportedVersion) {
		return true
	}
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}
