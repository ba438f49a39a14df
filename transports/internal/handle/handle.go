// Package handle wraps the publishers and subscribers a transport hands out:
// the shared publisher stays owned by the transport, every subscriber is
// closed with the transport, and errors pass through secret redaction.
package handle

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/transports/internal/errs"
	"github.com/b2131a45/eventkit/transports/internal/redact"
)

// Owned returns pub as handed out by a transport: Publish errors are
// redacted and Close does nothing, because the transport owns pub and closes
// it in its own Close. (Watermill's router closes the publishers of its
// handlers; with a shared publisher that would break every other user.)
//
// When pub can delay messages (middleware.Delayer's methods) and schedule
// them (cqrs.Scheduler's), so can the handle.
func Owned(pub message.Publisher, secrets redact.Secrets) message.Publisher {
	if d, ok := pub.(delayer); ok {
		od := ownedDelayer{ownedPublisher{pub: pub, secrets: secrets}, d}
		if s, ok := pub.(scheduler); ok && s.SchedulesDelivery() {
			return ownedScheduler{od}
		}
		return od
	}
	return ownedPublisher{pub: pub, secrets: secrets}
}

// delayer is middleware.Delayer, which transports do not import.
type delayer interface {
	Delay(topic, group string, level int, d time.Duration, msgs ...*message.Message) error
	DelayLevels() int
}

type ownedDelayer struct {
	ownedPublisher
	d delayer
}

func (p ownedDelayer) Delay(topic, group string, level int, d time.Duration, msgs ...*message.Message) error {
	return p.secrets.Error(p.d.Delay(topic, group, level, d, msgs...))
}

func (p ownedDelayer) DelayLevels() int { return p.d.DelayLevels() }

// scheduler is cqrs.Scheduler's marker.
type scheduler interface{ SchedulesDelivery() bool }

type ownedScheduler struct{ ownedDelayer }

func (ownedScheduler) SchedulesDelivery() bool { return true }

type ownedPublisher struct {
	pub     message.Publisher
	secrets redact.Secrets
}

func (p ownedPublisher) Publish(topic string, msgs ...*message.Message) error {
	return p.secrets.Error(p.pub.Publish(topic, msgs...))
}

func (p ownedPublisher) Close() error { return nil }

// Subscribers tracks the subscribers a transport created, so that the
// transport's Close closes those still open.
type Subscribers struct {
	secrets redact.Secrets

	mu     sync.Mutex
	open   map[*subscriber]struct{}
	closed bool
}

// NewSubscribers returns an empty set whose subscribers redact secrets.
func NewSubscribers(secrets redact.Secrets) *Subscribers {
	return &Subscribers{secrets: secrets, open: map[*subscriber]struct{}{}}
}

// Add tracks sub and returns it wrapped. After CloseAll, Add closes sub and
// returns errs.ErrClosed.
func (s *Subscribers) Add(sub message.Subscriber) (message.Subscriber, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.Join(errs.ErrClosed, sub.Close())
	}
	w := &subscriber{sub: sub, owner: s}
	s.open[w] = struct{}{}
	return w, nil
}

// CloseAll closes every open subscriber and makes later Adds fail. It is
// safe to call more than once.
func (s *Subscribers) CloseAll() error {
	s.mu.Lock()
	s.closed = true
	open := make([]*subscriber, 0, len(s.open))
	for w := range s.open {
		open = append(open, w)
	}
	s.mu.Unlock()

	var err error
	for _, w := range open {
		err = errors.Join(err, w.Close())
	}
	return err
}

func (s *Subscribers) remove(w *subscriber) {
	s.mu.Lock()
	delete(s.open, w)
	s.mu.Unlock()
}

type subscriber struct {
	sub   message.Subscriber
	owner *Subscribers

	once sync.Once
	err  error
}

func (w *subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	msgs, err := w.sub.Subscribe(ctx, topic)
	return msgs, w.owner.secrets.Error(err)
}

// SubscribeInitialize prepares topic for this subscriber's group when the
// underlying subscriber can (AMQP declares the group's queue, SQL creates
// the tables, Kafka creates the topic).
func (w *subscriber) SubscribeInitialize(topic string) error {
	if si, ok := w.sub.(message.SubscribeInitializer); ok {
		return w.owner.secrets.Error(si.SubscribeInitialize(topic))
	}
	return nil
}

func (w *subscriber) Close() error {
	w.once.Do(func() {
		w.err = w.owner.secrets.Error(w.sub.Close())
		w.owner.remove(w)
	})
	return w.err
}
