package transporttest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/testenv"
)

// Transport is what the suite exercises: a publisher and a factory of
// consumer-group subscribers. Every eventkit transport satisfies it.
type Transport interface {
	Publisher() message.Publisher
	Subscriber(group string) (message.Subscriber, error)
	Close() error
}

// Features declares what a transport promises. The suite checks the
// promises made and nothing more.
type Features struct {
	// OrderedPerKey: one subscriber of a group receives the messages that
	// share an events.KeyPartitionKey in publish order.
	OrderedPerKey bool
	// OrderedPerTopic: one subscriber of a group receives all messages of a
	// topic in publish order.
	OrderedPerTopic bool
	// NewGroupsSeeHistory: the first subscription of a group receives the
	// messages published before the group existed. When false, the suite
	// initialises every group (message.SubscribeInitializer) before it
	// publishes.
	NewGroupsSeeHistory bool
	// Timeout bounds each wait for messages. Defaults to 30s.
	Timeout time.Duration
}

// Run runs the conformance scenarios as parallel subtests. open must return
// a new, working transport; the suite closes it when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) Transport, features Features) {
	if features.Timeout == 0 {
		features.Timeout = 30 * time.Second
	}
	scenarios := []struct {
		name string
		run  func(*suite)
	}{
		{"publish_subscribe", (*suite).publishSubscribe},
		{"empty_publish", (*suite).emptyPublish},
		{"each_group_gets_every_event", (*suite).eachGroupGetsEveryEvent},
		{"group_members_share_events", (*suite).groupMembersShareEvents},
		{"envelope_survives", (*suite).envelopeSurvives},
		{"cloudevents_input", (*suite).cloudEventsInput},
		{"delay_comes_back_to_its_group_only", (*suite).delayComesBackToItsGroupOnly},
		{"nack_redelivers", (*suite).nackRedelivers},
		{"close_without_ack_redelivers", (*suite).closeWithoutAckRedelivers},
		{"ordered_per_key", (*suite).orderedPerKey},
		{"ordered_per_topic", (*suite).orderedPerTopic},
		{"new_group_sees_history", (*suite).newGroupSeesHistory},
		{"subscription_stops_with_context", (*suite).subscriptionStopsWithContext},
		{"close", (*suite).close},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			tr := open(t)
			t.Cleanup(func() {
				if err := tr.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			sc.run(&suite{t: t, tr: tr, f: features, topic: testenv.Name(t, "tt")})
		})
	}
}

type suite struct {
	t     *testing.T
	tr    Transport
	f     Features
	topic string
}

// subscriber returns a subscriber of group, closed when the test ends.
func (s *suite) subscriber(group string) message.Subscriber {
	s.t.Helper()
	sub, err := s.tr.Subscriber(group)
	if err != nil {
		s.t.Fatalf("Subscriber(%q): %v", group, err)
	}
	s.t.Cleanup(func() { _ = sub.Close() })
	return sub
}

// subscribe subscribes sub to the suite's topic until the test ends.
func (s *suite) subscribe(sub message.Subscriber) <-chan *message.Message {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s.t.Cleanup(cancel)
	msgs, err := sub.Subscribe(ctx, s.topic)
	if err != nil {
		s.t.Fatalf("Subscribe(%q): %v", s.topic, err)
	}
	return msgs
}

// prepare makes the groups exist before anything is published, for
// transports whose new groups do not see older messages.
func (s *suite) prepare(groups ...string) {
	s.t.Helper()
	if s.f.NewGroupsSeeHistory {
		return
	}
	for _, g := range groups {
		sub := s.subscriber(g)
		if si, ok := sub.(message.SubscribeInitializer); ok {
			if err := si.SubscribeInitialize(s.topic); err != nil {
				s.t.Fatalf("SubscribeInitialize(%q) for group %q: %v", s.topic, g, err)
			}
		}
		if err := sub.Close(); err != nil {
			s.t.Fatalf("Close: %v", err)
		}
	}
}

func (s *suite) publish(msgs ...*message.Message) {
	s.t.Helper()
	if err := s.tr.Publisher().Publish(s.topic, msgs...); err != nil {
		s.t.Fatalf("Publish %d message(s) to %q: %v", len(msgs), s.topic, err)
	}
}

// receive acks messages from msgs until n distinct UUIDs arrived and returns
// them in arrival order, duplicates dropped (delivery is at-least-once).
func (s *suite) receive(msgs <-chan *message.Message, n int) []*message.Message {
	s.t.Helper()
	seen := map[string]bool{}
	var got []*message.Message
	timeout := time.After(s.f.Timeout)
	for len(got) < n {
		select {
		case m, ok := <-msgs:
			if !ok {
				s.t.Fatalf("subscription closed after %d of %d messages", len(got), n)
			}
			m.Ack()
			if !seen[m.UUID] {
				seen[m.UUID] = true
				got = append(got, m)
			}
		case <-timeout:
			s.t.Fatalf("received %d of %d messages within %s", len(got), n, s.f.Timeout)
		}
	}
	return got
}

// next returns the next message without acking it.
func (s *suite) next(msgs <-chan *message.Message) *message.Message {
	s.t.Helper()
	select {
	case m, ok := <-msgs:
		if !ok {
			s.t.Fatal("subscription closed while waiting for a message")
		}
		return m
	case <-time.After(s.f.Timeout):
		s.t.Fatalf("no message within %s", s.f.Timeout)
	}
	return nil
}

func newMessages(n int, key func(i int) string) []*message.Message {
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"n":%d}`, i))
		if key != nil {
			msgs[i].Metadata.Set(events.KeyPartitionKey, key(i))
		}
	}
	return msgs
}

func uuids(msgs []*message.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.UUID
	}
	return ids
}

func (s *suite) requireSameSet(want, got []*message.Message) {
	s.t.Helper()
	w, g := uuids(want), uuids(got)
	slices.Sort(w)
	slices.Sort(g)
	if !slices.Equal(w, g) {
		s.t.Fatalf("received UUIDs differ from published ones:\nwant %v\ngot  %v", w, g)
	}
}

func (s *suite) publishSubscribe() {
	s.prepare("g")
	batch := newMessages(50, nil)
	single := newMessages(10, nil)
	s.publish(batch...)
	for _, m := range single {
		s.publish(m)
	}
	want := append(batch, single...)
	got := s.receive(s.subscribe(s.subscriber("g")), len(want))
	s.requireSameSet(want, got)
	payloads := map[string][]byte{}
	for _, m := range want {
		payloads[m.UUID] = m.Payload
	}
	for _, m := range got {
		if !bytes.Equal(m.Payload, payloads[m.UUID]) {
			s.t.Fatalf("message %s: payload %q, want %q", m.UUID, m.Payload, payloads[m.UUID])
		}
	}
}

func (s *suite) emptyPublish() {
	if err := s.tr.Publisher().Publish(s.topic); err != nil {
		s.t.Fatalf("Publish with no message: %v", err)
	}
}

func (s *suite) eachGroupGetsEveryEvent() {
	s.prepare("a", "b")
	want := newMessages(30, nil)
	s.publish(want...)
	a := s.subscribe(s.subscriber("a"))
	b := s.subscribe(s.subscriber("b"))
	s.requireSameSet(want, s.receive(a, len(want)))
	s.requireSameSet(want, s.receive(b, len(want)))
}

func (s *suite) groupMembersShareEvents() {
	// Registered first, so it runs after the subscriptions are closed, which
	// ends the readers below.
	var wg sync.WaitGroup
	s.t.Cleanup(wg.Wait)

	s.prepare("g")
	first := s.subscribe(s.subscriber("g"))
	second := s.subscribe(s.subscriber("g"))
	want := newMessages(40, nil)
	s.publish(want...)

	type delivery struct {
		member int
		msg    *message.Message
	}
	merged := make(chan delivery)
	done := make(chan struct{})
	defer close(done)
	for member, msgs := range []<-chan *message.Message{first, second} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range msgs {
				m.Ack()
				select {
				case merged <- delivery{member, m}:
				case <-done:
					return
				}
			}
		}()
	}

	byMember := [2]map[string]bool{{}, {}}
	union := map[string]bool{}
	timeout := time.After(s.f.Timeout)
	for len(union) < len(want) {
		select {
		case d := <-merged:
			byMember[d.member][d.msg.UUID] = true
			union[d.msg.UUID] = true
		case <-timeout:
			s.t.Fatalf("the group received %d of %d messages within %s", len(union), len(want), s.f.Timeout)
		}
	}
	for _, m := range want {
		if !union[m.UUID] {
			s.t.Fatalf("message %s never delivered to the group", m.UUID)
		}
	}
	if len(byMember[0]) == len(want) && len(byMember[1]) == len(want) {
		s.t.Fatal("both members of one group received every message: the group does not share work")
	}
}

func (s *suite) envelopeSurvives() {
	s.prepare("g")
	full := message.NewMessage(watermill.NewUUID(), []byte{0x00, 0xff, 0xfe, '{', 0xc3, 0xa9, 0x00, '\n', 0x80})
	full.Metadata = message.Metadata{
		events.KeyName:          "orders.order_created",
		events.KeyEventID:       full.UUID,
		events.KeyVersion:       "2",
		events.KeyOccurredAt:    "2026-01-02T03:04:05.123456789Z",
		events.KeyCorrelationID: watermill.NewUUID(),
		events.KeyCausationID:   watermill.NewUUID(),
		events.KeySource:        "orders",
		events.KeyPartitionKey:  "order-42",
		events.KeyContentType:   "application/protobuf",
		events.KeyTraceParent:   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		events.KeyTraceState:    "congo=t61rcWkgMzE",
		"x-custom":              "spaces, ünïcödé and \"quotes\"",
	}
	empty := message.NewMessage(watermill.NewUUID(), nil)
	s.publish(full, empty)

	got := s.receive(s.subscribe(s.subscriber("g")), 2)
	byID := map[string]*message.Message{}
	for _, m := range got {
		byID[m.UUID] = m
	}
	m, ok := byID[full.UUID]
	if !ok {
		s.t.Fatalf("message %s lost its UUID; got %v", full.UUID, uuids(got))
	}
	if !bytes.Equal(m.Payload, full.Payload) {
		s.t.Fatalf("payload changed: got %x, want %x", m.Payload, full.Payload)
	}
	for _, k := range slices.Sorted(maps.Keys(full.Metadata)) {
		if got, want := m.Metadata.Get(k), full.Metadata.Get(k); got != want {
			s.t.Errorf("metadata %q = %q, want %q", k, got, want)
		}
	}
	e, ok := byID[empty.UUID]
	if !ok {
		s.t.Fatalf("message %s lost its UUID; got %v", empty.UUID, uuids(got))
	}
	if len(e.Payload) != 0 {
		s.t.Fatalf("empty payload arrived as %x", e.Payload)
	}
}

func (s *suite) nackRedelivers() {
	s.prepare("g")
	msgs := newMessages(2, nil)
	s.publish(msgs[0])
	sub := s.subscribe(s.subscriber("g"))

	first := s.next(sub)
	if first.UUID != msgs[0].UUID {
		s.t.Fatalf("got %s, want %s", first.UUID, msgs[0].UUID)
	}
	first.Nack()
	again := s.next(sub)
	if again.UUID != msgs[0].UUID {
		s.t.Fatalf("after a nack got %s, want %s again", again.UUID, msgs[0].UUID)
	}
	again.Ack()

	s.publish(msgs[1])
	for {
		m := s.next(sub)
		m.Ack()
		if m.UUID == msgs[1].UUID {
			return
		}
	}
}

func (s *suite) closeWithoutAckRedelivers() {
	s.prepare("g")
	want := newMessages(1, nil)[0]
	s.publish(want)

	first := s.subscriber("g")
	held := s.next(s.subscribe(first))
	if held.UUID != want.UUID {
		s.t.Fatalf("got %s, want %s", held.UUID, want.UUID)
	}
	if err := first.Close(); err != nil {
		s.t.Fatalf("Close with a message held: %v", err)
	}
	got := s.receive(s.subscribe(s.subscriber("g")), 1)
	if got[0].UUID != want.UUID {
		s.t.Fatalf("after the holder closed got %s, want %s", got[0].UUID, want.UUID)
	}
}

// requireOrder checks that, in got, the first occurrences of want's
// messages come in want's order.
func (s *suite) requireOrder(what string, want, got []*message.Message) {
	s.t.Helper()
	pos := map[string]int{}
	for i, m := range got {
		if _, ok := pos[m.UUID]; !ok {
			pos[m.UUID] = i
		}
	}
	for i := 1; i < len(want); i++ {
		if pos[want[i-1].UUID] > pos[want[i].UUID] {
			s.t.Fatalf("%s: message %d (%s) arrived before message %d (%s)",
				what, i, want[i].UUID, i-1, want[i-1].UUID)
		}
	}
}

func (s *suite) orderedPerKey() {
	if !s.f.OrderedPerKey {
		s.t.Skip("the transport does not promise order per partition key")
	}
	s.prepare("g")
	keys := []string{"order-1", "order-2", "order-3", "order-4"}
	want := newMessages(100, func(i int) string { return keys[i%len(keys)] })
	for batch := range slices.Chunk(want, 10) {
		s.publish(batch...)
	}
	got := s.receive(s.subscribe(s.subscriber("g")), len(want))
	for _, key := range keys {
		var perKey []*message.Message
		for _, m := range want {
			if m.Metadata.Get(events.KeyPartitionKey) == key {
				perKey = append(perKey, m)
			}
		}
		s.requireOrder("key "+key, perKey, got)
	}
}

func (s *suite) orderedPerTopic() {
	if !s.f.OrderedPerTopic {
		s.t.Skip("the transport does not promise order per topic")
	}
	s.prepare("g")
	want := newMessages(100, nil)
	for batch := range slices.Chunk(want, 10) {
		s.publish(batch...)
	}
	s.requireOrder("topic", want, s.receive(s.subscribe(s.subscriber("g")), len(want)))
}

func (s *suite) newGroupSeesHistory() {
	if !s.f.NewGroupsSeeHistory {
		s.t.Skip("the transport does not promise older events to new groups")
	}
	want := newMessages(10, nil)
	s.publish(want...)
	s.requireSameSet(want, s.receive(s.subscribe(s.subscriber("late")), len(want)))
}

func (s *suite) subscriptionStopsWithContext() {
	s.prepare("g")
	sub := s.subscriber("g")
	ctx, cancel := context.WithCancel(context.Background())
	msgs, err := sub.Subscribe(ctx, s.topic)
	if err != nil {
		s.t.Fatalf("Subscribe: %v", err)
	}
	s.publish(newMessages(1, nil)...)
	s.next(msgs).Ack()
	cancel()
	s.requireClosed(msgs, "after its context was canceled")
}

// requireClosed drains msgs until it is closed.
func (s *suite) requireClosed(msgs <-chan *message.Message, when string) {
	s.t.Helper()
	timeout := time.After(s.f.Timeout)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				return
			}
			m.Nack()
		case <-timeout:
			s.t.Fatalf("subscription channel still open %s %s", s.f.Timeout, when)
		}
	}
}

func (s *suite) close() {
	s.prepare("g")
	sub := s.subscriber("g")
	msgs := s.subscribe(sub)
	s.publish(newMessages(1, nil)...)
	s.next(msgs).Ack()

	if err := s.tr.Close(); err != nil {
		s.t.Fatalf("Close: %v", err)
	}
	s.requireClosed(msgs, "after the transport closed")
	if err := s.tr.Close(); err != nil {
		s.t.Fatalf("second Close: %v", err)
	}
	if err := sub.Close(); err != nil {
		s.t.Fatalf("subscriber Close after the transport's Close: %v", err)
	}
	if err := s.tr.Publisher().Publish(s.topic, newMessages(1, nil)...); err == nil {
		s.t.Fatal("Publish after Close succeeded")
	}
	if _, err := s.tr.Subscriber("g"); err == nil {
		s.t.Fatal("Subscriber after Close succeeded")
	}
}
