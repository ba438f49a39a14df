package amqp

import (
	"cmp"
	"runtime"
	"slices"
	"sync"
)

// settler is the part of *amqp.Channel an acker writes to.
type settler interface {
	Ack(tag uint64, multiple bool) error
	Nack(tag uint64, multiple, requeue bool) error
}

// acker settles the deliveries of one channel from one goroutine, so that
// the consumers' acks go out together: every delivery is tracked from the
// moment it is received, in delivery-tag order, and each time the acker
// wakes it sends
//   - one basic.ack with multiple set for the longest run of acked
//     deliveries at the front (all of them settled: none is waiting for its
//     handler), which is a single frame for the broker however many it
//     covers;
//   - a basic.ack of its own for every other acked delivery, so that a slow
//     handler never holds back the acks behind it (nor, through the
//     prefetch window, the next deliveries);
//   - a basic.nack (requeue) of its own for every nacked delivery, before
//     any ack that could cover it.
//
// No ack waits for anything but the acker's previous write: it batches only
// what completed while that write was under way. A multiple ack never names
// a tag the broker already settled (RabbitMQ closes the channel for an
// unknown tag). Like any ack, a coalesced one is lost with the channel and
// the broker then redelivers.
type acker struct {
	ch  settler
	err func(error) // reports an ack or nack the broker did not get

	mu      sync.Mutex
	window  []pending // received and not yet dropped, in tag order
	ready   []uint64  // tags acked or nacked since the last pass
	stopped bool

	wake chan struct{} // 1-buffered: something is ready or stopping
	done chan struct{} // closed when the acker's goroutine returned
}

// pending is one tracked delivery.
type pending struct {
	tag   uint64
	state settleState
}

type settleState uint8

const (
	inFlight settleState = iota // with its handler
	toAck
	toNack
	sent // settled with the broker, out of order: dropped with the front
)

func newAcker(ch settler, onErr func(error)) *acker {
	a := &acker{ch: ch, err: onErr, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go a.run()
	return a
}

// track registers a received delivery; tags must come in increasing order,
// as a channel's deliveries do.
func (a *acker) track(tag uint64) {
	a.mu.Lock()
	a.window = append(a.window, pending{tag: tag})
	a.mu.Unlock()
}

// ack queues the ack of tag; nack queues its nack with requeue.
func (a *acker) ack(tag uint64)  { a.settle(tag, toAck) }
func (a *acker) nack(tag uint64) { a.settle(tag, toNack) }

func (a *acker) settle(tag uint64, state settleState) {
	a.mu.Lock()
	if p := a.find(tag); p != nil && p.state == inFlight {
		p.state = state
		a.ready = append(a.ready, tag)
	}
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// find returns the window's entry for tag, nil if it has none.
func (a *acker) find(tag uint64) *pending {
	i, ok := slices.BinarySearchFunc(a.window, tag, func(p pending, t uint64) int { return cmp.Compare(p.tag, t) })
	if !ok {
		return nil
	}
	return &a.window[i]
}

// stop sends what is settled and ends the acker's goroutine; deliveries
// still in flight are left to the broker, which requeues them when the
// channel closes. Call it once every handler has settled or given up.
func (a *acker) stop() {
	a.mu.Lock()
	a.stopped = true
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
	<-a.done
}

// run sends the settlements, a pass per wake-up. A pass costs the entries
// settled since the previous one plus those it drops: nothing scans the
// window behind a delivery still in flight.
func (a *acker) run() {
	defer close(a.done)
	var ready, nacks, acks []uint64
	for range a.wake {
		// Let the handlers that are about to settle do so first: their
		// acks then share this pass's frame.
		runtime.Gosched()
		a.mu.Lock()
		ready, a.ready = a.ready, ready[:0]
		nacks, acks = nacks[:0], acks[:0]
		// The run of settled entries at the front is dropped; its acks go
		// out as one multiple ack naming the highest acked tag in it that
		// the broker still holds (not one sent alone before).
		var multiple uint64
		front := 0
		for ; front < len(a.window) && a.window[front].state != inFlight; front++ {
			if a.window[front].state == toAck {
				multiple = a.window[front].tag
			}
		}
		var cut uint64 // tags up to cut were dropped
		if front > 0 {
			cut = a.window[front-1].tag
		}
		for _, tag := range ready {
			p := a.find(tag) // the front is still in the window
			if p.state == toNack {
				nacks = append(nacks, tag)
			}
			if tag > cut { // behind a delivery in flight: alone, now
				if p.state == toAck {
					acks = append(acks, tag)
				}
				p.state = sent
			}
		}
		a.window = a.window[front:]
		stopped := a.stopped
		a.mu.Unlock()
		// Nacks first: a multiple ack covers only what the broker still
		// holds unacked, which a nack sent before it no longer is.
		for _, tag := range nacks {
			a.report(a.ch.Nack(tag, false, true))
		}
		if multiple != 0 {
			a.report(a.ch.Ack(multiple, true))
		}
		for _, tag := range acks {
			a.report(a.ch.Ack(tag, false))
		}
		if stopped {
			return
		}
	}
}

func (a *acker) report(err error) {
	if err != nil && a.err != nil {
		a.err(err)
	}
}
