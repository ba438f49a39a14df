// Package events holds the wire contract of eventkit: the Envelope carried in
// message metadata, the Registry that maps stable event names and schema
// versions to Go types, the codecs (JSON by default, Protobuf), upcasters that
// turn old payload versions into the current one, and the context helpers
// that carry correlation and causation through handlers.
//
// # Wire contract
//
// An integration event travels as a Watermill *message.Message: the payload
// is the encoded event, the metadata carries the envelope under the Key*
// constants. The message UUID equals the event id (a UUIDv7). The envelope
// never lives in the payload, so events are plain Go structs.
//
// # Errors
//
// Decoding fails with ErrUnknownEvent (name not registered),
// ErrUnsupportedVersion (a version newer than registered, or no upcaster path)
// or *DecodeError (payload or envelope headers that do not decode). All three
// satisfy IsPermanent: retrying cannot fix them, so consumers send such
// messages to the dead-letter topic instead of redelivering them forever.
// Nothing in this package panics on bad input.
//
// Where this package sits among the others, and the path of an event through
// them: docs/architecture.md in the repository.
package events
