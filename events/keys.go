package events

// Metadata keys of the wire contract. Every integration event is a Watermill
// message whose payload is the encoded event and whose metadata carries the
// envelope under these keys. They are stable API: renaming one is a breaking
// change for every producer and consumer on the wire.
const (
	// KeyName is the stable event name, e.g. "orders.order_created".
	// It is the key Watermill's CQRS marshalers use.
	KeyName = "name"
	// KeyEventID is the unique event id (UUIDv7). It equals the message UUID.
	KeyEventID = "event_id"
	// KeyVersion is the payload schema version, a decimal integer ≥ 1.
	KeyVersion = "event_version"
	// KeyOccurredAt is when the event happened, RFC 3339 UTC with nanoseconds.
	KeyOccurredAt = "occurred_at"
	// KeyCorrelationID identifies the whole conversation. It is Watermill's
	// correlation key, so Watermill's own middleware reads the same value.
	KeyCorrelationID = "correlation_id"
	// KeyCausationID is the event id of the message being handled when this
	// event was published.
	KeyCausationID = "causation_id"
	// KeySource is the producing service or bounded context.
	KeySource = "source"
	// KeyPartitionKey is the ordering key (usually the aggregate id). Kafka
	// uses it as the message key.
	KeyPartitionKey = "partition_key"
	// KeyContentType is the codec's media type, e.g. "application/json".
	KeyContentType = "content_type"
	// KeyDeliverAt is when a message is due, RFC 3339 UTC: transports do
	// not deliver it before (delayed retries, scheduled events).
	KeyDeliverAt = "deliver_at"
	// KeyTraceParent and KeyTraceState carry W3C trace context when tracing is on.
	KeyTraceParent = "traceparent"
	KeyTraceState  = "tracestate"
)
