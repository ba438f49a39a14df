// Package forwarder is eventkit's transactional outbox: an Outbox that
// writes integration events in the caller's database transaction, and a
// Relay that moves committed events to a broker (seed:
// IIntegrationEventOutbox and OutboxProcessor).
//
//	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Dialect: forwarder.Postgres, Registry: reg, Source: "orders"})
//	err = ob.Setup(ctx)                        // once, idempotent
//
//	tx, err := db.BeginTx(ctx, nil)
//	// ... domain writes with tx ...
//	err = ob.Add(ctx, tx, OrderCreated{...})  // or ob.Bus(tx).Publish(ctx, ...)
//	err = tx.Commit()
//
//	relay, err := forwarder.NewRelay(ob, transport.Publisher(), forwarder.RelayConfig{MaxAttempts: 5})
//	err = relay.Run(ctx)                       // until ctx ends
//
// # Storage
//
// PostgreSQL (database/sql or pgx; Add takes a *sql.Tx or a pgx.Tx),
// MySQL/MariaDB and SQLite (modernc.org/sqlite). The table of an outbox named
// N is "watermill_N". Its rows keep Watermill's forwarder envelope
// (destination_topic, uuid, base64 payload, metadata) in the payload column,
// and on PostgreSQL and MySQL the table is a watermill-sql default-schema
// messages table with extra columns (event_name, topic, status, attempts,
// last_error, published_at), so a stock Watermill forwarder reading topic N
// with watermill-sql's default schema can drain it too.
//
// # Guarantees
//
// Atomicity: events added in a transaction are relayed if and only if the
// transaction commits.
//
// Delivery is at-least-once. A row is marked published only after the broker
// confirmed it (the Publisher returned nil for it). A relay that crashes or
// is killed between the broker's confirmation and the marking publishes the
// rows of that batch again after a restart or takeover; consumers remove
// duplicates by event id (middleware.Deduplicate). A nacked message is
// never counted as delivered.
//
// Order: rows are published in commit order per destination topic. On
// PostgreSQL the order is (transaction id, offset) among transactions below
// the snapshot xmin, as in watermill-sql: a transaction that commits late
// is waited for, never skipped (rows of later transactions are held until
// it ends, so a long-running transaction anywhere in the cluster delays the
// relay). On MySQL the relay's locking read waits for transactions still
// inserting rows, and it reads only up to the first gap in the offsets: an
// AUTO_INCREMENT offset is taken before its row is in the index, so a
// missing offset may be an insert in flight. A gap that does not fill
// within RelayConfig.GapTimeout (a rolled-back insert) is skipped. On
// SQLite writers are serialized. A row the broker
// rejects is retried alone before younger rows, up to MaxAttempts; once
// parked, younger rows go on without it.
//
// One active relay per outbox: several relays (processes) on one outbox are
// safe. One holds the outbox's lock (PostgreSQL advisory lock, MySQL
// GET_LOCK, SQLite lease row) and publishes; the others stand by and take
// over within RelayConfig.TakeoverInterval after it stops or its connection
// dies (SQLite: after LeaseTTL). In normal operation no row is published
// twice; after a lost connection or lease, the rows of the in-flight batch
// may be.
//
// Latency: on PostgreSQL with pgx (a pgx pool, or database/sql with the pgx
// driver) a trigger NOTIFYs the relay on commit, and polling every
// PollInterval is the safety net. MySQL, SQLite and other PostgreSQL
// drivers are polled adaptively: every MinPollInterval while rows flow,
// backing off to PollInterval when idle.
//
// Broker outage: when the broker is unreachable or pushes back (a lost
// connection, an AMQP nack), the relay pauses with capped exponential
// backoff (RetryInterval up to MaxBackoff) and resumes by itself; no
// attempt is counted. A row the broker rejects (unroutable, too large)
// counts an attempt; after MaxAttempts it is parked as failed with its error
// (see Outbox.Failed), and Outbox.Requeue puts it back. See IsUnavailable
// for how Publish errors are read.
//
// Stop: when Run's context ends the relay finishes the in-flight batch: the
// publish in progress gets RelayConfig.StopTimeout to be confirmed, rows
// confirmed by then are marked, the others stay pending for the next relay.
// Then the lock is released at once.
//
// Throughput: the relay reads BatchSize rows in relay order, publishes them
// with one Publish(topic, msgs...) per destination topic (a pipelining or
// batching publisher sends them together and waits for all confirms once),
// and marks the confirmed rows in one statement. Reading the next batch and
// marking the previous one overlap with publishing. Memory stays bounded by
// about two batches, whatever the backlog.
//
// Publisher errors: a Publisher that knows which messages of a call the
// broker did not confirm returns an error with a NotConfirmed() []string
// method (their UUIDs); a lost connection or back-pressure (a nack) is an
// error with Unavailable() bool returning true. Stock Watermill publishers
// work too: the relay then finds out by publishing one message at a time.
// See IsUnavailable.
//
// # Moving from a stock Watermill forwarder
//
// A stock forwarder keeps its progress in watermill-sql's offsets table
// ("watermill_offsets_" + Name), which the relay neither reads nor writes:
// the relay goes by each row's status. To switch, stop the stock
// forwarder, call Outbox.AdoptForwarderProgress with its consumer group
// ("eventkit outbox adopt"), then start the relay: what the stock forwarder
// acknowledged is marked published, the rest is relayed, nothing is sent
// twice beyond an unacknowledged last batch. Outbox.HandOverToForwarder
// ("eventkit outbox handover") is the way back.
//
// # Observability
//
// OutboxConfig.TracerProvider turns on OpenTelemetry tracing: Add starts a
// producer "create" span per event and stores its W3C trace context in the
// event's traceparent/tracestate metadata, which the row keeps; the relay
// starts a "send" span per publish call linked to those, and the consumer's
// span (middleware.Tracing) continues the trace. RelayConfig.Observer
// receives batch sizes, publish outcomes and confirm latencies (package
// metrics implements it); Outbox.Stats and Outbox.Lag give the counters and
// the lag; Relay.Health is for health endpoints. See docs/observability.md.
//
// Where this package sits among the others, and the path of an event through
// them: docs/architecture.md in the repository.
package forwarder
