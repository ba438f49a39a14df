package events

import (
	"context"

	wmcqrs "github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Marshaler returns a Watermill cqrs.CommandEventMarshaler backed by the
// registry, so stock Watermill EventBus and EventProcessor code reads and
// writes the eventkit wire contract: registered names, versions, upcasting,
// UUIDv7 ids and the envelope headers (without source, which the marshaler
// does not know; use cqrs.Bus for that).
func (r *Registry) Marshaler() wmcqrs.CommandEventMarshaler { return marshaler{r} }

type marshaler struct{ r *Registry }

func (m marshaler) Marshal(v any) (*message.Message, error) {
	return m.r.NewMessage(context.Background(), v, "")
}

func (m marshaler) Unmarshal(msg *message.Message, v any) error {
	_, err := m.r.DecodeInto(msg, v)
	return err
}

// Name returns the registered name of v, or Watermill's fully qualified
// struct name for an unregistered type (which no registered message matches).
func (m marshaler) Name(v any) string {
	if name, err := m.r.Name(v); err == nil {
		return name
	}
	return wmcqrs.FullyQualifiedStructName(v)
}

func (m marshaler) NameFromMessage(msg *message.Message) string { return msg.Metadata.Get(KeyName) }
