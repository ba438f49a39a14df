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
// # Wire forms
//
// RabbitMQ and Kafka write events in the form the URL's wire option names:
// eventkit (the default: the envelope in headers named after its keys),
// cloudevents (CloudEvents 1.0 binary mode) or cloudevents-structured. In
// every form the broker's standard properties are set (AMQP message-id,
// type, content-type, timestamp, correlation-id, app-id; the Kafka key and
// timestamp), and every subscriber, of every transport, reads every form,
// so services written in other languages, with CloudEvents SDKs or plain
// clients, produce and consume eventkit events. See docs/interop.md.
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
// # Names
//
// Topic and consumer-group names are checked before they reach SQL or a
// broker: 1 to 249 of A-Z a-z 0-9 . _ : - (not starting with . : or -;
// Kafka topics without ':'). Anything else, such as a quote, a space, a
// slash or a control character, fails with an error that wraps
// ErrInvalidName, names the bad value and is permanent. mem:// checks the
// same names, so that code tested in memory behaves as on a broker.
//
// # TLS and authentication
//
//	amqps://user:pass@host:5671/vhost?cacertfile=/ca.pem&certfile=/c.pem&keyfile=/k.pem&server_name_indication=rabbit
//	kafka://user:pass@host:9093?tls=true&sasl_mechanism=SCRAM-SHA-512
//	postgres://user:pass@host/db?sslmode=verify-full&sslrootcert=/ca.pem
//	mysql://user:pass@host/db?tls=true
//
// amqps:// uses TLS with the system roots, or the cacertfile, certfile and
// keyfile given. Kafka's tls=true uses TLS 1.2 or later with the system
// roots; a user and password enable SASL with sasl_mechanism PLAIN (the
// default), SCRAM-SHA-256 or SCRAM-SHA-512 (PLAIN sends the password as is:
// use it with TLS only). PostgreSQL's sslmode and the other libpq ssl*
// parameters are passed to pgx; MySQL's tls is the driver's. The typed
// Configs of the subpackages take a *tls.Config instead.
//
// # Ownership and secrets
//
// The Transport owns its publisher: the publisher's Close does nothing, so
// a Watermill router that closes its handlers' publishers cannot break the
// others. Transport.Close closes the subscribers still open, the publisher
// (waiting for Publish calls in flight), and the connections. Passwords in
// URLs never appear in errors or log lines, not even from a URL whose
// unescaped '?', '#' or '@' in the password breaks its parsing. Open logs
// through slog.Default(), OpenConfig through Config.Logger; the subpackages
// take a *slog.Logger.
//
// Where this package sits among the others, and the path of an event through
// them: docs/architecture.md in the repository.
package transports
