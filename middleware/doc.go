// Package middleware is eventkit's consumer side: Watermill router
// middleware that propagates correlation, retries with backoff, parks poison
// messages in a dead-letter topic, and deduplicates with a durable inbox, so
// that handlers are effectively idempotent.
//
// Watermill's package of the same name is imported as wmmiddleware where
// both are needed.
//
// # The chain
//
// Default returns the whole chain in the only order that works, outermost
// first:
//
//	Recover → Correlation → PoisonQueue → DelayedRetry → Retry → Timeout → Deduplicate → Recover → handler
//
//	chain, err := middleware.Default(middleware.DefaultConfig{
//		Publisher: transport.Publisher(),   // dead letters
//		Inbox:     inbox,                   // middleware.NewPostgresInbox(db, …)
//		InTx:      true,
//	})
//	router.AddMiddleware(chain.Middlewares()...)
//
// Each middleware also stands alone (NewCorrelation, NewRetry,
// NewDelayedRetry, NewPoisonQueue, NewDeduplicate, Recover, Timeout) for
// other orders, but PoisonQueue must wrap DelayedRetry, which must wrap
// Retry (watermill#645), and Timeout must be below Retry.
//
// # Guarantees
//
// Delivery is at-least-once from the transport to the handler; duplicates
// on the wire are dropped by the inbox. In detail:
//
//   - A message is acked only when the handler succeeded, it was a
//     duplicate, or its dead letter was published. Otherwise it is nacked and
//     the transport redelivers it; no path drops a message.
//   - A handler error is first retried in-process (Retry, the immediate
//     retries) with exponential backoff and jitter, holding the message, up
//     to MaxAttempts and MaxElapsed (by default 5 attempts within 10 s).
//     Permanent errors (Permanent, events.IsPermanent: unknown event,
//     unsupported version, undecodable payload) are not retried.
//   - When the immediate retries are spent, DelayedRetry hands the message
//     to the transport's delay (Delayer) for the next level (by default
//     10 s, 20 s, 30 s) and acks it: the stream goes on, and the message
//     comes back later to the failing consumer group only, same event id
//     and envelope. A failed hand-over nacks the message.
//   - When the last level is spent or the error is permanent, the message
//     goes to the dead-letter topic (<topic>.dlq) with dlq_reason,
//     dlq_error, dlq_attempts, dlq_delayed_attempts, dlq_original_topic,
//     dlq_handler and dlq_failed_at, keeping its UUID, payload and
//     envelope; then it is acked. If the dead-letter publish fails, the
//     message is nacked.
//   - Shutdown (or a rebalance) ends the message context: Retry stops at
//     once and the message is nacked, never dead-lettered (ErrInterrupted).
//   - A panic in the handler is an error (*PanicError, with its stack):
//     rolled back, retried, dead-lettered with ReasonPanic. A panic in the
//     chain itself is recovered outermost and nacks the message.
//   - The inbox records (handler, event id) only after the handler
//     succeeded; two deliveries of one event never run the handler at the
//     same time. In InTx mode the handler's writes (TxFromContext), its inbox
//     row and the outbox events it adds in that transaction commit or roll
//     back together: the effect happens exactly once. Without InTx the
//     effect is at-least-once across crashes, exactly-once otherwise. A
//     handler that returned nil has its key committed even when its
//     message context ended meanwhile (a router closing), within 30 s.
//   - PostgreSQL inbox modes, each with every guarantee above: one
//     transaction per message (NewPostgresInbox; without InTx, on the pgx
//     driver, BEGIN and the claim's INSERT go in one round trip),
//     NewPostgresInboxPool (the same on a pgx pool, without database/sql;
//     InTx handlers use PgxTxFromContext), InboxConfig.GroupCommit (the
//     claims in flight share one transaction; no InTx) and
//     InboxConfig.GroupTx (they share a few transactions, a SAVEPOINT per
//     message, so that a failed member rolls back its own writes only;
//     InTx works; a broken group transaction fails all its members, which
//     are retried). docs/architecture.md says which to pick when.
//   - Keys are kept for the inbox retention and purged in bounded batches by
//     a Purger; Default refuses a retention shorter than the retry horizon
//     plus a redelivery margin.
//   - Order: Retry holds the message, so the transport's order (per
//     partition on Kafka, per queue on AMQP) is kept through the immediate
//     retries, at the cost of blocking the stream meanwhile. A delayed or
//     dead-lettered message leaves the stream; the ones behind it go on,
//     and a delayed one comes back after them.
//
// # Dead letters
//
// DeadLetterFromMessage parses a dead letter; ListDLQ lists a dead-letter
// topic and ReplayDLQ republishes selected dead letters to their original
// topic with their original event id (see ReplayDLQ for how each transport
// behaves). The attempt count is visible to handlers (AttemptFromContext)
// and recorded in dlq_attempts; it counts attempts within one delivery.
//
// # Logging
//
// Middlewares log with *slog.Logger and the attributes event_id,
// event_name, correlation_id and handler. Payloads and other metadata are
// never logged. Handlers get the same attributes with LoggerFromContext, or
// on their own logger through NewLogHandler.
//
// # Tracing and metrics
//
// DefaultConfig.TracerProvider adds Tracing (a consumer span per delivery
// that continues the producer's trace from the traceparent metadata) right
// after the outer Recover. DefaultConfig.Observer receives handler
// durations and errors (Measure, right around the handler), retries, dead
// letters and duplicates; package metrics implements it with Prometheus.
// Both are off by default.
//
// Where this package sits among the others, and the path of an event through
// them: docs/architecture.md in the repository.
package middleware
