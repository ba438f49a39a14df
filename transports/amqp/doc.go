// Package amqp is the RabbitMQ transport: a publisher with pipelined
// publisher confirms and durable consumer-group subscribers, both built on
// github.com/rabbitmq/amqp091-go, on the wire format and topology of
// watermill-amqp (v3, NewDurablePubSubConfig), so that stock watermill-amqp
// publishers and subscribers interoperate with it.
//
// # Topology
//
// A topic is a durable fanout exchange named after the topic. A consumer
// group is a durable queue named topic_group (QueueName; watermill-amqp's
// GenerateQueueNameTopicNameWithSuffix(group)) bound to that exchange.
// Subscribers declare exchange, queue and binding; the publisher declares
// the exchange. Messages are persistent (delivery mode 2).
//
// # Wire forms
//
// Config.Wire (URL option wire) chooses how a message is written:
// events.WireEventkit (the default) writes the metadata as string headers,
// as watermill-amqp does; events.WireCloudEvents writes CloudEvents 1.0 in
// binary mode, the envelope as "cloudEvents:"-prefixed headers (the AMQP
// binding's application-property names) and the payload's media type as
// the content-type property; events.WireCloudEventsStructured writes a
// structured CloudEvent (application/cloudevents+json) as the body. In
// every form the standard properties are set from the envelope:
// message-id (event id), type (event name), content-type, timestamp
// (occurred at), correlation-id and app-id (source), and the UUID travels
// in header _watermill_message_uuid. Subscribers read every form, messages
// with only standard properties (amqplib, pika, the Java client), and the
// x-amqp-1.0-* headers in which RabbitMQ before 3.13 passes on the
// properties of a message an AMQP 1.0 client sent. Config.OnPublish and
// Config.OnDelivery reach the raw publishing and delivery. The field-by-
// field mapping is in docs/interop.md.
//
// # Publishing
//
// Publish(topic, msgs...) publishes every message on one confirm-mode
// channel without waiting in between, then waits for all the broker's
// confirms (pipelining), and returns nil only if every message was
// confirmed. A message the broker nacks (for example a queue with
// x-overflow=reject-publish that is full) or does not confirm within
// Config.ConfirmTimeout is reported in a *PublishError, never counted as
// delivered. Up to Config.PublishChannels calls run at once.
//
// The frames of one call go to the socket in writes of up to 64 KB (the
// connection is corked while the call sends) rather than one write per
// message, which is what amqp091-go does: 1,000 messages of 450 bytes are
// about 10 writes instead of 1,000, and BenchmarkPublishBatch's CPU per
// message halves (16.8 to 8.4 µs, against 14.5 µs for plain amqp091-go).
// Nothing waits for a write that is held: the call sends the rest before
// it waits for its confirms.
//
// A fanout exchange drops messages when no queue is bound to it, which is
// the case for a topic no consumer group has subscribed to yet. By default
// messages are published mandatory and such a message comes back from the
// broker: Publish fails with ErrUnroutable instead of losing it silently.
// Declare the groups first (message.SubscribeInitializer on a subscriber,
// or infrastructure as code) or choose Config.Unroutable = UnroutableDrop
// to accept the loss.
//
// # Delivery
//
// Delivery is at-least-once. A subscription receives its group's messages
// one at a time and acks to the broker when the message is acked; a nacked
// message is requeued at once; messages not acked when a subscription or its
// connection ends are requeued by the broker. One goroutine per channel
// writes the settlements: the acks of a run of settled deliveries at the
// front of the channel's window go out as one basic.ack with multiple set
// (with Concurrency above 1, or while the previous write is under way,
// that is one frame for many messages), an ack behind a delivery still in
// flight goes out alone at once, so a slow handler holds back no other
// ack; nothing waits for more acks to come. With Config.Prefetch at its
// default of 1 a single subscription receives its queue in order, nacks
// included, so order holds per topic and per partition key for a group with
// one subscriber. Several subscribers of a group share its queue and the
// order between them is not kept.
//
// # Connections
//
// The publisher and the subscribers use separate connections. Both
// reconnect by themselves: a Publish while the broker is unreachable fails
// with ErrNotConnected and a later Publish dials again (at most once per
// Config.ReconnectInterval); a subscription whose channel or connection
// is lost redeclares its topology and consumes again every
// Config.ReconnectInterval until it succeeds, without closing its output
// channel.
//
// # Close
//
// Publisher.Close waits for the Publish calls in flight to return (each
// bounded by ConfirmTimeout), then closes the connection: there is no
// buffer to flush, a Publish that returned nil was confirmed. Subscriber
// Close stops its subscriptions, and the broker requeues the messages they
// had not acked.
//
// Where this package sits among the others, and the path of an event through
// them: docs/architecture.md in the repository.
package amqp
