// Package memory is an in-process transport: a topic log held in memory with
// durable consumer groups, for tests, examples and single-process programs.
//
// It behaves like the broker transports, which Watermill's GoChannel does not
// (a persistent GoChannel replays the whole history to every subscription,
// has no consumer groups and, by its own documentation, no ordering):
//
//   - Every message published to a topic is kept for the life of the
//     Transport, so a group that subscribes late still receives every event
//     published before it existed. Memory therefore grows with the number of
//     messages published; this transport is not meant for unbounded streams.
//   - Each consumer group receives every message of the topic. Subscribers
//     in the same group share the work: each message goes to one of them.
//   - Delivery is at-least-once. A message is handed to one subscriber of the
//     group at a time and the group moves on only when it is acked. A nacked
//     message is delivered again after Config.ResendInterval; a message held
//     by a subscriber that closes before acking is delivered again to the
//     group.
//   - Order: a group receives a topic's messages in publish order, one at a
//     time, so order holds per topic and therefore per partition key.
//   - Publish returns when the messages are appended to the log; nothing is
//     lost between Publish and Close. Close stops every subscription and
//     drops the log: the transport does not outlive the process.
//
// Where this package sits among the others, and the path of an event through
// them: docs/architecture.md in the repository.
package memory
