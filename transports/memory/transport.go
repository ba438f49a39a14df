package memory

import (
	"bytes"
	"context"
	"maps"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/transports/internal/errs"
	"github.com/b2131a45/eventkit/transports/internal/handle"
	"github.com/b2131a45/eventkit/transports/internal/redact"
)

// ErrClosed is returned by Publish, Subscribe and Subscriber after Close.
var ErrClosed = errs.ErrClosed

// ErrNoGroup is returned by Subscriber for an empty group name.
var ErrNoGroup = errs.ErrNoGroup

// Transport is an in-memory topic log with consumer groups. Its methods are
// safe for concurrent use.
type Transport struct {
	cfg  Config
	pub  message.Publisher
	subs *handle.Subscribers

	mu      sync.Mutex
	topics  map[string]*topicLog
	closed  bool
	closing chan struct{}
}

type topicLog struct {
	msgs   []*message.Message
	groups map[string]*cursor
	// changed is closed and replaced whenever msgs grows or a group
	// releases its message: waiting subscribers then look again.
	changed chan struct{}
}

type cursor struct {
	next int  // offset of the next message to deliver
	busy bool // a subscriber holds the message at next
}

// New returns an empty transport.
func New(cfg Config) (*Transport, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	t := &Transport{
		cfg:     cfg.withDefaults(),
		topics:  map[string]*topicLog{},
		closing: make(chan struct{}),
		subs:    handle.NewSubscribers(redact.Secrets{}),
	}
	t.pub = handle.Owned(publisher{t}, redact.Secrets{})
	return t, nil
}

// Open returns a new transport configured by a mem:// URL (see ParseURL).
func Open(_ context.Context, rawURL string) (*Transport, error) {
	cfg, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return New(cfg)
}

// Publisher returns the transport's publisher. Publish appends the messages
// to the topic's log (copies: later changes to msgs do not show) and returns
// ErrClosed after Close. The transport owns the publisher: its Close does
// nothing.
func (t *Transport) Publisher() message.Publisher { return t.pub }

// Subscriber returns a new subscriber in the consumer group. Each group
// receives every message of a topic, from the first one published;
// subscribers of one group share the messages. Close the subscriber when done
// with it; the transport's Close closes those still open.
func (t *Transport) Subscriber(group string) (message.Subscriber, error) {
	if group == "" {
		return nil, ErrNoGroup
	}
	// Names are checked as the brokers' transports check them, so that
	// code tested on mem:// does not fail on a broker.
	if err := errs.CheckName("memory: consumer group", group); err != nil {
		return nil, err
	}
	if t.isClosed() {
		return nil, ErrClosed
	}
	return t.subs.Add(&subscriber{t: t, group: group, closing: make(chan struct{})})
}

// Close stops every subscription, waiting for their goroutines, and makes
// later calls fail with ErrClosed. Messages not yet acked are dropped with
// the log. Close is safe to call more than once.
func (t *Transport) Close() error {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.closing)
		t.topics = nil
	}
	t.mu.Unlock()
	return t.subs.CloseAll()
}

func (t *Transport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

type publisher struct{ t *Transport }

func (p publisher) Publish(topic string, msgs ...*message.Message) error {
	t := p.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if err := errs.CheckName("memory: topic", topic); err != nil {
		return &errs.PublishError{Topic: topic, UUIDs: messageUUIDs(msgs), Err: err}
	}
	log := t.topicLocked(topic)
	for _, m := range msgs {
		log.msgs = append(log.msgs, clone(m))
	}
	log.notifyLocked()
	return nil
}

func (publisher) Close() error { return nil }

func (t *Transport) topicLocked(topic string) *topicLog {
	log, ok := t.topics[topic]
	if !ok {
		log = &topicLog{groups: map[string]*cursor{}, changed: make(chan struct{})}
		t.topics[topic] = log
	}
	return log
}

func (l *topicLog) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// claim waits until the group's next message is free and returns a fresh
// copy of it, marking it busy. It returns false when stop or ctx ends first.
func (t *Transport) claim(ctx context.Context, stop <-chan struct{}, topic, group string) (*message.Message, bool) {
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return nil, false
		}
		log := t.topicLocked(topic)
		cur, ok := log.groups[group]
		if !ok {
			cur = &cursor{}
			log.groups[group] = cur
		}
		if !cur.busy && cur.next < len(log.msgs) {
			cur.busy = true
			m := clone(log.msgs[cur.next])
			t.mu.Unlock()
			return m, true
		}
		changed := log.changed
		t.mu.Unlock()

		select {
		case <-changed:
		case <-ctx.Done():
			return nil, false
		case <-stop:
			return nil, false
		case <-t.closing:
			return nil, false
		}
	}
}

// release frees the group's busy message; acked moves the group past it.
func (t *Transport) release(topic, group string, acked bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	log := t.topicLocked(topic)
	cur := log.groups[group]
	cur.busy = false
	if acked {
		cur.next++
	}
	log.notifyLocked()
}

func clone(m *message.Message) *message.Message {
	c := message.NewMessage(m.UUID, bytes.Clone(m.Payload))
	c.Metadata = maps.Clone(m.Metadata)
	if c.Metadata == nil {
		c.Metadata = message.Metadata{}
	}
	return c
}

func messageUUIDs(msgs []*message.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.UUID
	}
	return ids
}
