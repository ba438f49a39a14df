package amqp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// kickGrace is how long after the last message of a quorum delay queue
// was due the kicker looks at the queue.
const kickGrace = 2 * time.Second

// kicker makes RabbitMQ expire the due messages of the quorum delay queues
// this publisher delayed into.
//
// A quorum queue expires the messages at its head on a timer of its
// leader, and on every command it applies. After a leader change the new
// leader can miss the timer (seen with RabbitMQ 3.10 under node kills in
// the nemesis run; rabbitmq-server#10718 reports the same for quorum queues
// with at-least-once dead-lettering): the due messages then wait in the
// delay queue until the next command, which is usually the next delayed
// message, and forever when none comes. Nothing is lost, but a delayed
// retry that never comes back is a stalled handler.
//
// So, kickGrace after the last message published to a delay queue was
// due, the kicker sends the queue a command: basic.get, which expires the
// due messages at the head (RabbitMQ dead-letters them into the group's
// queue, as the timer would have), and finds the queue empty. A message
// it gets instead is not due yet (published by another process, say): it
// is given back at once (basic.nack, requeue; it keeps its place and its
// expiry) and the queue is looked at again one delay later. A healthy
// queue is empty by then and costs one basic.get.
//
// The kicker knows the queues this process delayed into since it started:
// messages another process delayed and left stuck are expired by the next
// message delayed into that queue, from any process.
type kicker struct {
	p    *Publisher
	log  *slog.Logger
	wake chan struct{}
	done chan struct{}

	mu   sync.Mutex
	due  map[string]kickDue // queue → when to look
	gets atomic.Int64       // basic.gets sent (tests)
}

type kickDue struct {
	at  time.Time     // the last message's due time
	ttl time.Duration // the queue's delay
}

func newKicker(p *Publisher) *kicker {
	k := &kicker{p: p, log: p.secrets.Logger(p.cfg.Logger), wake: make(chan struct{}, 1), done: make(chan struct{}), due: map[string]kickDue{}}
	go k.run()
	return k
}

// delayed records that messages published now to queue are due at at.
func (k *kicker) delayed(queue string, at time.Time, ttl time.Duration) {
	k.mu.Lock()
	if cur, ok := k.due[queue]; !ok || at.After(cur.at) {
		k.due[queue] = kickDue{at: at, ttl: ttl}
	}
	k.mu.Unlock()
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// run kicks each queue kickGrace after its due time, until the publisher
// closes.
func (k *kicker) run() {
	defer close(k.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		next := now.Add(time.Hour)
		var ready []string
		k.mu.Lock()
		for q, d := range k.due {
			at := d.at.Add(kickGrace)
			if !at.After(now) {
				ready = append(ready, q)
			} else if at.Before(next) {
				next = at
			}
		}
		k.mu.Unlock()
		for _, q := range ready {
			select {
			case <-k.p.closing:
				return
			default:
			}
			k.kick(q)
		}
		if len(ready) > 0 {
			continue // kick rescheduled some: look again
		}
		timer.Reset(time.Until(next))
		select {
		case <-k.p.closing:
			return
		case <-k.wake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		}
	}
}

// kick sends queue a basic.get and settles what it finds: empty or gone,
// the queue is forgotten; a message not due yet goes back and the queue is
// looked at one delay later; an error (the broker is down) tries again
// after a second.
func (k *kicker) kick(queue string) {
	k.mu.Lock()
	d := k.due[queue]
	k.mu.Unlock()
	again := func(at time.Time) {
		k.mu.Lock()
		if cur, ok := k.due[queue]; ok && !cur.at.After(d.at) {
			k.due[queue] = kickDue{at: at, ttl: d.ttl}
		}
		k.mu.Unlock()
	}
	forget := func() {
		k.mu.Lock()
		if cur, ok := k.due[queue]; ok && !cur.at.After(d.at) {
			delete(k.due, queue) // unless a later message came meanwhile
		}
		k.mu.Unlock()
	}
	waiting, err := k.get(queue)
	var ae *amqp.Error
	switch {
	case errors.As(err, &ae) && ae.Code == amqp.NotFound:
		forget()
	case err != nil:
		k.log.Debug("amqp: could not look at a delay queue; trying again", slog.String("queue", queue), slog.Any("err", err))
		again(time.Now().Add(time.Second - kickGrace))
	case waiting:
		again(time.Now().Add(d.ttl))
	default:
		forget()
	}
}

// get sends queue one basic.get on a channel of its own and gives back
// what it got. It reports whether a message (not due) was waiting. When
// the queue held messages and the get found it empty, they were all past
// their due time and RabbitMQ expired them only then: it logs how many.
func (k *kicker) get(queue string) (waiting bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), k.p.cfg.DialTimeout)
	defer cancel()
	conn, err := k.p.conn.get(ctx)
	if err != nil {
		return false, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("amqp: open channel: %w", err)
	}
	defer func() { _ = ch.Close() }()
	before, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return false, err
	}
	if before.Messages == 0 {
		return false, nil
	}
	k.gets.Add(1)
	m, ok, err := ch.Get(queue, false)
	if err != nil {
		return false, err
	}
	if ok {
		// Not due: given back, in place. The due messages ahead of it,
		// if any, were expired by this get; they cannot be counted here
		// (the nack is asynchronous, the count would include it or not).
		return true, m.Nack(false, true)
	}
	// Empty now: the get expired every message the queue held.
	k.log.Warn("amqp: a quorum delay queue still held messages past their due time; a basic.get made RabbitMQ expire them (see rabbitmq-server#10718)",
		slog.String("queue", queue), slog.Int("messages", before.Messages))
	return ok, nil
}
