// Package cqrs publishes and handles typed integration events over Watermill.
//
// Bus stamps the full envelope (see package events) on every event it
// publishes; Processor runs typed handlers, one durable subscription per
// handler (the handler name is the consumer group), on a Watermill router.
//
// # Guarantees
//
// Delivery is at-least-once from publish to handler when the transport is
// durable: a handler error nacks the message and the transport redelivers
// it. Duplicates are possible; make handlers idempotent or put
// middleware.Deduplicate in front of them. Order is the transport's: per
// partition key on Kafka, per queue on AMQP, per topic on SQL.
//
// Inside a handler, events.EnvelopeFromContext returns the incoming envelope,
// and every Bus.Publish made with the handler's context keeps the incoming
// correlation id and sets the causation id to the incoming event id.
//
// A message of another registered event type that arrives on a handler's
// topic is acked and skipped (counted by Processor.Skipped, logged at debug).
// A message that cannot be decoded — no event name or id, an unregistered
// name, a newer version, a payload that does not decode — and a handler's
// permanent error (events.IsPermanent) are never redelivered in a loop:
// under a middleware.PoisonQueue (middleware.Default) the error goes to it,
// which dead-letters the message; without one, the Processor dead-letters
// it itself through ProcessorConfig.DeadLetter, with the same dead-letter
// metadata (dlq_reason names the cause), and acks it.
//
// Bus.Publish with DeliverAt or DeliverAfter schedules events on a
// publisher that can hold them until due (Scheduler: the outbox's Bus(tx),
// mem://) and fails with ErrScheduleNotSupported on others.
//
// Where this package sits among the others, and the path of an event through
// them: docs/architecture.md in the repository.
package cqrs
