package transporttest

import (
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
)

// delayer is middleware.Delayer, which eventkit's transports' publishers
// implement.
type delayer interface {
	Delay(topic, group string, level int, d time.Duration, msgs ...*message.Message) error
	DelayLevels() int
}

// delayComesBackToItsGroupOnly checks a transport's delay (the delayed
// retries of middleware.DelayedRetry): a message delayed for group "a"
// comes back to "a" no earlier than its delay, with its UUID, payload and
// metadata (events.KeyDeliverAt added), never to group "b" of the same
// topic; messages published after it are not held back by it.
func (s *suite) delayComesBackToItsGroupOnly() {
	d, ok := s.tr.Publisher().(delayer)
	if !ok {
		s.t.Log("the transport's publisher cannot delay messages: nothing to check")
		return
	}
	s.prepare("a", "b")
	subA := s.subscribe(s.subscriber("a"))
	subB := s.subscribe(s.subscriber("b"))

	const delay = 1500 * time.Millisecond
	delayed := newMessages(1, nil)[0]
	delayed.Metadata.Set("tenant", "acme")
	start := time.Now()
	if err := d.Delay(s.topic, "a", 1, delay, delayed.Copy()); err != nil {
		s.t.Fatalf("Delay: %v", err)
	}
	after := newMessages(3, nil)
	s.publish(after...)

	got := s.receive(subA, 4)
	for i, m := range got[:3] {
		if m.UUID == delayed.UUID {
			s.t.Fatalf("the delayed message came back before message %d published after it", i)
		}
	}
	back := got[3]
	if back.UUID != delayed.UUID {
		s.t.Fatalf("got %s last, want the delayed %s", back.UUID, delayed.UUID)
	}
	if took := time.Since(start); took < delay {
		s.t.Fatalf("the delayed message came back after %s, before its delay of %s", took, delay)
	}
	if string(back.Payload) != string(delayed.Payload) || back.Metadata.Get("tenant") != "acme" {
		s.t.Fatalf("the delayed message changed: payload %q, metadata %v", back.Payload, back.Metadata)
	}
	if _, err := events.ParseTime(back.Metadata.Get(events.KeyDeliverAt)); err != nil {
		s.t.Fatalf("no %s on the delayed message: %v", events.KeyDeliverAt, err)
	}

	s.requireSameSet(after, s.receive(subB, 3))
	select {
	case m := <-subB:
		s.t.Fatalf("group b received %s: a delay is for its own group only", m.UUID)
	case <-time.After(delay):
	}
}
