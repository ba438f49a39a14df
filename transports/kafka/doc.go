// Package kafka is the Kafka transport: a batching, idempotent producer and
// consumer-group subscribers, on IBM/sarama, in watermill-kafka's (v3) wire
// format so that stock watermill-kafka publishers and subscribers
// interoperate with it.
//
// # Publishing
//
// Publish(topic, msgs...) hands the whole call to Sarama at once
// (SyncProducer.SendMessages), so the messages travel in batches rather
// than one round trip each, and returns when every message was written to
// all in-sync replicas (acks=all). The producer is idempotent (one request
// in flight per broker, sequence numbers), so Sarama's retries neither
// duplicate nor reorder messages within a partition. Messages that fail are
// listed in a *PublishError wrapping ErrUnavailable (try again later) or
// ErrRejected (the message itself is refused). The events.KeyPartitionKey metadata
// becomes the Kafka message key: messages with the same key go to the same
// partition, chosen as the Java client, kafkajs and librdkafka's
// murmur2_random choose it (Config.Partitioner, PartitionerMurmur2), so
// producers in other languages sharing the topic keep per-key order.
// Messages without one are spread over the partitions. The record timestamp
// is the event's occurred_at.
//
// Upgrading from eventkit's earlier FNV-1a placement (Sarama's hash) moves
// most keys to another partition: events of a key produced just before and
// just after the switch may then be consumed out of order. Drain the topic
// before switching, or keep PartitionerFNV1a (URL partitioner=fnv1a).
//
// # Wire forms
//
// Config.Wire (URL option wire) chooses how a record is written:
// events.WireEventkit (the default) writes the metadata as record headers,
// as watermill-kafka does, the UUID in header _watermill_message_uuid;
// events.WireCloudEvents writes CloudEvents 1.0 in binary mode ("ce_"
// headers and content-type, the CloudEvents Kafka binding);
// events.WireCloudEventsStructured writes a structured CloudEvent as the
// value. Subscribers read every form; the record key fills the partition
// key and the record timestamp occurred_at when the headers lack them.
// Config.OnProduce and Config.OnConsume reach the raw records. The field-by-
// field mapping is in docs/interop.md.
//
// # Delivery
//
// A consumer group is a Kafka consumer group. A group that has no committed
// offset starts at the oldest retained message, so a new group receives the
// events published before it existed. Each group receives every message;
// the group's subscribers share the partitions. Delivery is at-least-once:
// a message is marked consumed when acked, offsets are committed every
// second and when a subscriber closes, and messages acked after the last
// commit can come again after a crash or a rebalance. A nacked message is
// delivered again after Config.NackResendInterval, blocking its partition.
// Order holds per partition, hence per partition key; there is no order
// between partitions. A received message's context carries its Kafka key,
// partition, offset and timestamp (MessageKeyFromCtx and the like).
//
// Each Subscribe call is a member of the group, and a member joining or
// leaving rebalances the group: every member ends its session and rejoins
// before any gets partitions again. A subscription ends its session as soon
// as its next heartbeat (Config.HeartbeatInterval) tells it of the
// rebalance, even when nobody reads its channel: a message not yet taken is
// left to the partition's next owner. A message taken and not yet acked
// holds the rebalance until it is acked or nacked, for at most Sarama's
// rebalance timeout (60s), after which the coordinator expels the member.
//
// # Close
//
// Publisher.Close waits for the Publish calls in flight (Publish returns
// only once its messages are acknowledged, so nothing is buffered), then
// closes the producer. Subscriber.Close stops its subscriptions, commits
// the marked offsets and leaves the group.
//
// Where this package sits among the others, and the path of an event through
// them: docs/architecture.md in the repository.
package kafka
