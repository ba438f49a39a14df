package forwarder

import "time"

// RelayObserver receives a relay's measurements; package metrics implements
// it with Prometheus collectors. The relay calls it synchronously from its
// loop, so its methods must be fast; several relays may share one, so they
// must be safe for concurrent use.
type RelayObserver interface {
	// BatchRead is called with the number of rows of every non-empty batch
	// the relay read from the outbox.
	BatchRead(outbox string, rows int)
	// Published is called after every publish call to the broker, with the
	// messages the call carried, how many the broker confirmed, how long
	// the call took (the confirm latency: the relay's publishers return
	// once the broker confirmed) and the call's error (nil when all were
	// confirmed).
	Published(outbox, topic string, messages, confirmed int, latency time.Duration, err error)
	// Parked is called for every row parked as failed.
	Parked(outbox, topic string)
}
