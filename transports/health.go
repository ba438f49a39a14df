package transports

import "context"

// Health reports whether the broker is reachable: RabbitMQ connections
// open, a Kafka broker answering, the SQL database answering a ping; an
// in-memory transport is always healthy. Errors never contain the URL's password. Fits cqrs.ProcessorConfig.
// BrokerHealth and forwarder.RelayConfig.BrokerHealth.
func (t *Transport) Health(ctx context.Context) error {
	if h, ok := t.backend.(interface{ Health(context.Context) error }); ok {
		return h.Health(ctx)
	}
	return nil
}

// MessagingSystem is the OpenTelemetry messaging.system value of the
// transport ("rabbitmq", "kafka", "postgresql", "mysql", "memory"), for
// OutboxConfig.MessagingSystem and DefaultConfig.MessagingSystem.
func (t *Transport) MessagingSystem() string {
	switch t.kind {
	case KindAMQP:
		return "rabbitmq"
	case KindPostgres:
		return "postgresql"
	default:
		return string(t.kind)
	}
}
