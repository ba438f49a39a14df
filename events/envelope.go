package events

import (
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Envelope is the metadata every integration event carries next to its
// payload. See the Key* constants for how each field is written on the wire.
type Envelope struct {
	ID, Name, CorrelationID, CausationID, Source, PartitionKey string
	Version                                                    int
	OccurredAt                                                 time.Time
	// ContentType is the codec's media type, e.g. "application/json".
	ContentType string
}

// Apply writes the envelope into the message metadata and sets the message
// UUID to the event id. Empty fields are not written.
func (e Envelope) Apply(msg *message.Message) {
	if e.ID != "" {
		msg.UUID = e.ID
	}
	set := func(k, v string) {
		if v != "" {
			msg.Metadata.Set(k, v)
		}
	}
	set(KeyEventID, e.ID)
	set(KeyName, e.Name)
	if e.Version > 0 {
		msg.Metadata.Set(KeyVersion, strconv.Itoa(e.Version))
	}
	if !e.OccurredAt.IsZero() {
		msg.Metadata.Set(KeyOccurredAt, e.OccurredAt.UTC().Format(time.RFC3339Nano))
	}
	set(KeyCorrelationID, e.CorrelationID)
	set(KeyCausationID, e.CausationID)
	set(KeySource, e.Source)
	set(KeyPartitionKey, e.PartitionKey)
	set(KeyContentType, e.ContentType)
}

// EnvelopeFromMessage reads the envelope from message metadata in eventkit
// form (see Canonicalize for the other forms).
//
// A message written by stock Watermill code may lack eventkit keys: a missing
// event id falls back to the message UUID, a missing correlation id to the
// event id (the event starts its own conversation), and a missing version
// means 1. occurred_at may be RFC 3339 or an epoch integer (see ParseTime).
// A missing name or id, a version that is not an integer ≥ 1, or an
// occurred_at that does not parse is a *DecodeError naming the header; the
// first two wrap ErrMissingHeader, the third ErrUnsupportedVersion.
func EnvelopeFromMessage(msg *message.Message) (Envelope, error) {
	md := msg.Metadata
	env := Envelope{
		ID:            md.Get(KeyEventID),
		Name:          md.Get(KeyName),
		CorrelationID: md.Get(KeyCorrelationID),
		CausationID:   md.Get(KeyCausationID),
		Source:        md.Get(KeySource),
		PartitionKey:  md.Get(KeyPartitionKey),
		ContentType:   md.Get(KeyContentType),
		Version:       1,
	}
	if env.ID == "" {
		env.ID = msg.UUID
	}
	if env.CorrelationID == "" {
		env.CorrelationID = env.ID
	}
	if env.Name == "" {
		return env, &DecodeError{Header: KeyName, Err: ErrMissingHeader}
	}
	if env.ID == "" {
		return env, &DecodeError{Name: env.Name, Header: KeyEventID, Err: ErrMissingHeader}
	}
	if v := md.Get(KeyVersion); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return env, &DecodeError{Name: env.Name, Header: KeyVersion, Err: errBadVersion(v)}
		}
		env.Version = n
	}
	if v := md.Get(KeyOccurredAt); v != "" {
		t, err := ParseTime(v)
		if err != nil {
			return env, &DecodeError{Name: env.Name, Version: env.Version, Header: KeyOccurredAt, Err: err}
		}
		env.OccurredAt = t
	}
	return env, nil
}
