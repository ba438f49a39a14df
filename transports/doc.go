// Package transports opens the message broker eventkit publishes
// integration events to and consumes them from, chosen by URL at wiring
// time, so that the rest of a program does not change with the broker:
//
//	t, err := transports.Open(ctx, "amqp://guest:guest@localhost:5672/")
//	if err != nil { ... }
//	defer t.Close()
//	pub := t.Publisher()            // message.Publisher
//	sub, err := t.Subscriber("inventory.reserve-stock") // a durable consumer group
//
// The schemes:
//
//	amqp://, amqps://            RabbitMQ (package transports/amqp)
//	kafka://host:port[,host:port] Kafka (package transports/kafka)
//	postgres://, postgresql://   PostgreSQL tables (package transports/sql)
//	mysql://user:pass@host/db    MySQL or MariaDB tables (package transports/sql)
//	mem://                       in-process (package transports/memory)
//
// Each subpackage documents its URL options, its defaults and its
// guarantees in detail, and can be used directly with a typed Config.
//
// # Guarantees
//
// Every transport delivers at-least-once: a Publish that returned nil has
// been accepted durably by the broker (AMQP publisher confirms, Kafka
// acks=all with an idempotent producer, a committed SQL insert; memory: the
// process's log), and every consumer group receives every message, until it
// is acked, possibly more than once. Consumers must therefore tolerate
// duplicates (eventkit's inbox middleware removes them). Subscribers of one
// group share its messages. Order and what a new group receives differ by
// transport and are reported by Transport.Capabilities.
//
// # Publish errors
//
// A *PublishError lists the messages of a call that were not confirmed
// (also through its NotConfirmed method), and the error it wraps says
// whether to try again: it has an Unavailable() bool method that is true
// for an outage, a timeout or back-pressure, and a Permanent() bool method
// that is true when the broker refused the messages themselves. These are
// the conventions eventkit's outbox relay reads.
//
// # Ownership and secrets
//
// The Transport owns its publisher: the publisher's Close does nothing, so
// a Watermill router that closes its handlers' publishers cannot break the
// others. Transport.Close closes the subscribers still open, the publisher
// (waiting for Publish calls in flight), and the connections. Passwords in
// URLs never appear in errors or log lines. Open logs through
// slog.Default(); the subpackages take a *slog.Logger.
package transports
