// Package transporttest is eventkit's conformance suite for transports, the
// way testing/slogtest is for slog handlers. Every transport runs it against
// its real service, beside Watermill's universal pub/sub suite
// (github.com/ThreeDotsLabs/watermill/pubsub/tests), which checks the
// publisher and subscriber alone; this suite checks what eventkit relies on:
//
//   - publish then subscribe, in batches and one by one;
//   - consumer groups: each group receives every event, and the subscribers
//     of one group share the events;
//   - the envelope survives the trip: UUID, every metadata key of the wire
//     contract (package events) and the payload bytes, binary included;
//   - at-least-once: a nacked message, and a message held by a subscriber
//     that closes without acking, are delivered again;
//   - order per partition key and per topic, where Features promise it;
//   - a new group receives older events, where Features promise it;
//   - a subscription stops with its context, Close stops everything, is
//     safe twice, and Publish or Subscriber after Close fail.
//
// A transport's test declares what it promises and how to open it:
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, func(t *testing.T) transporttest.Transport {
//			tr, err := memory.New(memory.Config{})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return tr
//		}, transporttest.Features{OrderedPerKey: true, OrderedPerTopic: true, NewGroupsSeeHistory: true})
//	}
//
// Each scenario opens its own transport and uses its own topic, so the
// scenarios run in parallel. Goroutine leaks are not visible from inside
// one parallel test; packages that run the suite also use
// goleak.VerifyTestMain.
//
// Where this package sits among the others, and the path of an event through
// them: docs/architecture.md in the repository.
package transporttest
