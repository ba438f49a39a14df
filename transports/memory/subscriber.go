package memory

import (
	"context"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/transports/internal/errs"
)

type subscriber struct {
	t     *Transport
	group string

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

// Subscribe delivers the group's messages of topic on the returned channel,
// one at a time: the next message comes after the previous one is acked or
// nacked. The channel is closed when ctx ends, the subscriber or the
// transport closes.
func (s *subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.t.isClosed() {
		return nil, ErrClosed
	}
	if err := errs.CheckName("memory: topic", topic); err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	s.wg.Add(1)
	go s.consume(ctx, topic, out)
	return out, nil
}

type outcome int

const (
	acked outcome = iota
	nacked
	stopped
)

func (s *subscriber) consume(ctx context.Context, topic string, out chan<- *message.Message) {
	defer s.wg.Done()
	defer close(out)
	for {
		msg, ok := s.t.claim(ctx, s.closing, topic, s.group)
		if !ok {
			return
		}
		result := s.deliver(ctx, msg, out)
		s.t.release(topic, s.group, result == acked)
		switch result {
		case stopped:
			return
		case nacked:
			if !s.wait(ctx, s.t.cfg.ResendInterval) {
				return
			}
		}
	}
}

func (s *subscriber) deliver(ctx context.Context, msg *message.Message, out chan<- *message.Message) outcome {
	_ = events.Canonicalize(msg) // a message in CloudEvents form; an error is the registry's to report
	msgCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	msg.SetContext(msgCtx)
	select {
	case out <- msg:
	case <-ctx.Done():
		return stopped
	case <-s.closing:
		return stopped
	case <-s.t.closing:
		return stopped
	}
	select {
	case <-msg.Acked():
		return acked
	case <-msg.Nacked():
		return nacked
	case <-ctx.Done():
	case <-s.closing:
	case <-s.t.closing:
	}
	// Stopping. select picks at random among ready cases: an ack that came
	// before the stop still counts, or a consumer that acked and closed
	// would get the message again.
	select {
	case <-msg.Acked():
		return acked
	default:
		return stopped
	}
}

func (s *subscriber) wait(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
	case <-s.closing:
	case <-s.t.closing:
	}
	return false
}

// SubscribeInitialize does nothing: a memory group receives the topic's
// whole log, whenever it first subscribes.
func (s *subscriber) SubscribeInitialize(string) error { return nil }

// Close stops the subscriber's subscriptions and waits for them. A message
// it held without an ack goes to the group again.
func (s *subscriber) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}
