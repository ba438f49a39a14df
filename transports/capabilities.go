package transports

// Kind is the family of broker a Transport talks to.
type Kind string

const (
	KindAMQP     Kind = "amqp"
	KindKafka    Kind = "kafka"
	KindPostgres Kind = "postgres"
	KindMySQL    Kind = "mysql"
	KindMemory   Kind = "memory"
)

// Capabilities are what a transport promises beyond at-least-once delivery
// of every message to every consumer group.
type Capabilities struct {
	// OrderedPerKey: a group with one subscriber receives the messages
	// that share an events.KeyPartitionKey in publish order. (With several
	// subscribers in a group only Kafka keeps it: a key stays on one
	// partition, hence on one subscriber.)
	OrderedPerKey bool
	// OrderedPerTopic: a group with one subscriber receives all messages of
	// a topic in publish order.
	OrderedPerTopic bool
	// NewGroupsSeeHistory: the first subscription of a group receives the
	// messages published before the group existed. Without it (AMQP), a
	// group receives only what is published after its queue was declared:
	// declare groups before publishing (message.SubscribeInitializer).
	NewGroupsSeeHistory bool
	// Durable: published messages survive a restart of the broker or
	// database. The memory transport keeps them for the life of the
	// process only.
	Durable bool
}

func capabilitiesOf(k Kind) Capabilities {
	switch k {
	case KindAMQP:
		return Capabilities{OrderedPerKey: true, OrderedPerTopic: true, Durable: true}
	case KindKafka:
		return Capabilities{OrderedPerKey: true, NewGroupsSeeHistory: true, Durable: true}
	case KindPostgres, KindMySQL:
		return Capabilities{OrderedPerKey: true, OrderedPerTopic: true, NewGroupsSeeHistory: true, Durable: true}
	default: // KindMemory
		return Capabilities{OrderedPerKey: true, OrderedPerTopic: true, NewGroupsSeeHistory: true}
	}
}
