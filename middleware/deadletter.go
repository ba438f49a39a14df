package middleware

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
)

// ErrNotDeadLetter is returned (wrapped, naming the key) by
// DeadLetterFromMessage for a message that lacks a dead-letter key or has a
// malformed one.
var ErrNotDeadLetter = errors.New("middleware: not a dead letter")

// DeadLetter is a message as PoisonQueue parked it, with its dead-letter
// metadata parsed.
type DeadLetter struct {
	// EventID is the message UUID: the original event id.
	EventID string
	// Reason, Error, Attempts, OriginalTopic, Handler, FailedAt and Stack
	// are the dlq_* metadata.
	Reason   Reason
	Error    string
	Attempts int
	// DelayedAttempts is how many delayed rounds the message went through
	// before it was dead-lettered (dlq_delayed_attempts; 0 when none).
	DelayedAttempts int
	OriginalTopic   string
	Handler         string
	FailedAt        time.Time
	Stack           string
	// Replays is how many times the message was replayed before (dlq_replays).
	Replays int
	// Envelope is what could be read of the original envelope; for a message
	// whose envelope does not decode (ReasonDecode) some fields are empty.
	Envelope events.Envelope
	// Message is the dead-letter message itself.
	Message *message.Message
}

// DeadLetterFromMessage parses the dead-letter metadata of msg. It returns
// an error wrapping ErrNotDeadLetter, naming the key, when dlq_reason,
// dlq_original_topic, dlq_attempts (an integer ≥ 1) or dlq_failed_at (RFC
// 3339) is missing or malformed, or when dlq_replays is not a non-negative
// integer. It does not panic on any input.
func DeadLetterFromMessage(msg *message.Message) (DeadLetter, error) {
	if msg == nil {
		return DeadLetter{}, fmt.Errorf("%w: nil message", ErrNotDeadLetter)
	}
	md := msg.Metadata
	dl := DeadLetter{
		EventID:       msg.UUID,
		Reason:        Reason(md.Get(KeyReason)),
		Error:         md.Get(KeyError),
		OriginalTopic: md.Get(KeyOriginalTopic),
		Handler:       md.Get(KeyHandler),
		Stack:         md.Get(KeyStack),
		Message:       msg,
	}
	dl.Envelope, _ = events.EnvelopeFromMessage(msg)
	if dl.Reason == "" {
		return dl, fmt.Errorf("%w: %s is missing", ErrNotDeadLetter, KeyReason)
	}
	if dl.OriginalTopic == "" {
		return dl, fmt.Errorf("%w: %s is missing", ErrNotDeadLetter, KeyOriginalTopic)
	}
	n, err := strconv.Atoi(md.Get(KeyAttempts))
	if err != nil || n < 1 {
		return dl, fmt.Errorf("%w: %s %q is not an integer ≥ 1", ErrNotDeadLetter, KeyAttempts, md.Get(KeyAttempts))
	}
	dl.Attempts = n
	t, err := time.Parse(time.RFC3339Nano, md.Get(KeyFailedAt))
	if err != nil {
		return dl, fmt.Errorf("%w: %s %q is not RFC 3339", ErrNotDeadLetter, KeyFailedAt, md.Get(KeyFailedAt))
	}
	dl.FailedAt = t.UTC()
	if v := md.Get(KeyDeadLetterDelayedAttempts); v != "" {
		r, err := strconv.Atoi(v)
		if err != nil || r < 0 {
			return dl, fmt.Errorf("%w: %s %q is not an integer ≥ 0", ErrNotDeadLetter, KeyDeadLetterDelayedAttempts, v)
		}
		dl.DelayedAttempts = r
	}
	if v := md.Get(KeyReplays); v != "" {
		r, err := strconv.Atoi(v)
		if err != nil || r < 0 {
			return dl, fmt.Errorf("%w: %s %q is not an integer ≥ 0", ErrNotDeadLetter, KeyReplays, v)
		}
		dl.Replays = r
	}
	return dl, nil
}

// recordKeys are the keys PoisonQueue and DelayedRetry write for one
// failure; a replay strips them, so the replayed message starts its
// immediate and delayed retries afresh (KeyReplays is history and stays).
var recordKeys = []string{KeyReason, KeyError, KeyAttempts, KeyOriginalTopic, KeyHandler, KeyFailedAt, KeyStack, keyScan,
	KeyDeadLetterDelayedAttempts, KeyDelayedAttempts, KeyDelayedGroup, KeyDelayedError, events.KeyDeliverAt}

// replayMessage returns the message ReplayDLQ publishes to the original
// topic: the original UUID, payload and metadata, without the dead-letter
// record, with dlq_replays incremented.
func (d DeadLetter) replayMessage() *message.Message {
	m := message.NewMessage(d.Message.UUID, d.Message.Payload)
	for k, v := range d.Message.Metadata {
		m.Metadata[k] = v
	}
	for _, k := range recordKeys {
		delete(m.Metadata, k)
	}
	m.Metadata[KeyReplays] = strconv.Itoa(d.Replays + 1)
	return m
}
