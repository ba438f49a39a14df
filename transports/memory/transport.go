package memory

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"

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
	// delayed holds each group's delayed messages (Delay), by due time.
	delayed map[string][]delayedMsg
	// scheduled holds the published messages not due yet
	// (events.KeyDeliverAt ahead), by due time, for every group.
	scheduled []delayedMsg
	// changed is closed and replaced whenever msgs grows or a group
	// releases its message: waiting subscribers then look again.
	changed chan struct{}
}

type cursor struct {
	next int  // offset of the next message to deliver
	busy bool // a subscriber holds the message at next, or the delayed head
	// heldDelayed: what the subscriber holds is the group's first delayed
	// message, which stays first until it is released.
	heldDelayed bool
}

type delayedMsg struct {
	due time.Time
	msg *message.Message
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
	now := time.Now()
	for _, m := range msgs {
		c := clone(m)
		if due, ok := dueAfter(c, now); ok {
			i := len(log.scheduled)
			for i > 0 && log.scheduled[i-1].due.After(due) {
				i--
			}
			log.scheduled = slices.Insert(log.scheduled, i, delayedMsg{due: due, msg: c})
			continue
		}
		log.msgs = append(log.msgs, c)
	}
	log.notifyLocked()
	return nil
}

// SchedulesDelivery reports that the memory transport holds a message with
// events.KeyDeliverAt until it is due (cqrs.Scheduler).
func (publisher) SchedulesDelivery() bool { return true }

// dueAfter returns a message's due time when it is after now.
func dueAfter(m *message.Message, now time.Time) (time.Time, bool) {
	v := m.Metadata.Get(events.KeyDeliverAt)
	if v == "" {
		return time.Time{}, false
	}
	due, err := events.ParseTime(v)
	if err != nil || !due.After(now) {
		return time.Time{}, false
	}
	return due, true
}

// promoteLocked appends the scheduled messages that are due to the log, in
// due order, and returns when the next one is due (zero: none).
func (l *topicLog) promoteLocked(now time.Time) time.Time {
	n := 0
	for n < len(l.scheduled) && !l.scheduled[n].due.After(now) {
		l.msgs = append(l.msgs, l.scheduled[n].msg)
		n++
	}
	l.scheduled = l.scheduled[n:]
	if len(l.scheduled) == 0 {
		return time.Time{}
	}
	return l.scheduled[0].due
}

func (publisher) Close() error { return nil }

// Delay queues copies of msgs, with events.KeyDeliverAt, for the consumer
// group group of topic only: its subscribers receive them once d has passed,
// before the group's next message in the topic, one at a time like the
// rest. Nothing survives the process. level is not used.
func (p publisher) Delay(topic, group string, _ int, d time.Duration, msgs ...*message.Message) error {
	if err := errs.CheckName("memory: topic", topic); err != nil {
		return &errs.PublishError{Topic: topic, UUIDs: messageUUIDs(msgs), Err: err}
	}
	if err := errs.CheckName("memory: consumer group", group); err != nil {
		return &errs.PublishError{Topic: topic, UUIDs: messageUUIDs(msgs), Err: err}
	}
	return p.t.delay(topic, group, d, msgs)
}

// DelayLevels reports that the memory transport brings back any number of
// levels.
func (publisher) DelayLevels() int { return 0 }

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
		var timer *time.Timer
		var wake <-chan time.Time
		next := log.promoteLocked(time.Now())
		if list := log.delayed[group]; !cur.busy && len(list) > 0 {
			if time.Until(list[0].due) <= 0 {
				cur.busy, cur.heldDelayed = true, true
				m := clone(list[0].msg)
				t.mu.Unlock()
				return m, true
			}
			if next.IsZero() || list[0].due.Before(next) {
				next = list[0].due
			}
		}
		if !next.IsZero() {
			timer = time.NewTimer(time.Until(next))
			wake = timer.C
		}
		if !cur.busy && cur.next < len(log.msgs) {
			cur.busy = true
			m := clone(log.msgs[cur.next])
			t.mu.Unlock()
			return m, true
		}
		changed := log.changed
		t.mu.Unlock()

		stopped := false
		select {
		case <-wake:
		case <-changed:
		case <-ctx.Done():
			stopped = true
		case <-stop:
			stopped = true
		case <-t.closing:
			stopped = true
		}
		if timer != nil {
			timer.Stop()
		}
		if stopped {
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
	switch {
	case cur.heldDelayed && acked:
		log.delayed[group] = log.delayed[group][1:]
	case acked:
		cur.next++
	}
	cur.busy, cur.heldDelayed = false, false
	log.notifyLocked()
}

// delay queues copies of msgs for group, due after d, in due order (equal
// due times keep their order), never before a delayed message a subscriber
// holds.
func (t *Transport) delay(topic, group string, d time.Duration, msgs []*message.Message) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	log := t.topicLocked(topic)
	if log.delayed == nil {
		log.delayed = map[string][]delayedMsg{}
	}
	first := 0
	if cur := log.groups[group]; cur != nil && cur.heldDelayed {
		first = 1
	}
	due := time.Now().Add(d)
	list := log.delayed[group]
	for _, m := range msgs {
		c := clone(m)
		c.Metadata.Set(events.KeyDeliverAt, due.UTC().Format(time.RFC3339Nano))
		i := len(list)
		for i > first && list[i-1].due.After(due) {
			i--
		}
		list = slices.Insert(list, i, delayedMsg{due: due, msg: c})
	}
	log.delayed[group] = list
	log.notifyLocked()
	return nil
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
