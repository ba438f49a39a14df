package kafka

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"
)

// handler delivers the messages of a subscription's claims, one at a time
// per partition, and marks them consumed when acked.
//
// A group rebalances whenever a member joins or leaves, and the coordinator
// waits for every member to finish its session (return from ConsumeClaim)
// and rejoin before any member gets partitions again. So a claim must not
// wait on the application beyond the message it handed over: a message not
// yet taken from the channel is dropped when the session ends (the
// partition's next owner reads it again from the committed offset). Before
// this, a subscription whose channel was not being read (a subscriber
// reading its topics one after the other) kept the whole group, its other
// topics included, from rebalancing.
type handler struct {
	ctx        context.Context // the subscription's
	topic      string          // the subscription's own; the others are its retry topics
	group      sarama.ConsumerGroup
	out        chan<- *message.Message
	nackResend time.Duration
	onConsume  func(*sarama.ConsumerMessage, *message.Message)
	log        *slog.Logger
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	b := newBacklog(h.group, claim.Topic(), claim.Partition())
	filled := make(chan struct{})
	go func() {
		defer close(filled)
		b.fill(claim.Messages())
	}()
	// Sarama closes the claim's channel when the session ends.
	defer func() { <-filled }()

	retry := claim.Topic() != h.topic
	for {
		km, ok := b.next(sess.Context())
		if !ok {
			return nil
		}
		if retry && !b.holdUntil(sess.Context(), dueAt(km)) {
			return nil
		}
		if !h.deliver(sess, km) {
			return nil
		}
	}
}

// deliver hands km over and waits until it is acked, then marks it
// consumed. It returns false when the claim must stop: the session or the
// subscription ended before the message was taken or acked.
//
// A message the application has taken holds the session until it is acked
// or nacked, as Kafka's rebalance protocol expects: its offset is then
// committed when the session ends, and the coordinator waits for it up to
// the rebalance timeout.
func (h *handler) deliver(sess sarama.ConsumerGroupSession, km *sarama.ConsumerMessage) bool {
	msg, err := unmarshal(km)
	if err == nil && h.onConsume != nil {
		h.onConsume(km, msg)
	}
	if err != nil {
		// Not a record (a nil one): skip it rather than block the
		// partition on it forever. Every record decodes into a message;
		// a bad one is the handler's to dead-letter.
		h.log.Error("kafka: skip undecodable record", "err", err,
			"partition", km.Partition, "offset", km.Offset)
		sess.MarkMessage(km, "")
		return true
	}
	ctx, cancel := context.WithCancel(withRecord(h.ctx, km))
	defer cancel()

	for {
		msg.SetContext(ctx)
		select {
		case h.out <- msg:
		case <-sess.Context().Done():
			return false
		}

		select {
		case <-msg.Acked():
			sess.MarkMessage(km, "")
			return true
		case <-msg.Nacked():
		case <-h.ctx.Done():
			select {
			case <-msg.Acked():
				sess.MarkMessage(km, "")
			default:
			}
			return false
		}

		// Nacked: deliver it again after the resend interval, unless the
		// session ends first (the partition's next owner delivers it).
		t := time.NewTimer(h.nackResend)
		select {
		case <-t.C:
		case <-sess.Context().Done():
			t.Stop()
			return false
		}
		msg = msg.Copy()
	}
}

// backlogMax is how many fetched messages of a partition may wait for
// delivery before the partition's fetching pauses; it resumes at half.
const backlogMax = 256

// backlog holds the messages Sarama fetched for one partition until they
// are delivered. It reads Sarama's channel as fast as Sarama fills it, so
// that Sarama's fetch loop never waits on a partition whose consumer is busy
// (Consumer.MaxProcessingTime), and bounds itself by pausing the partition.
type backlog struct {
	group     sarama.ConsumerGroup
	partition map[string][]int32

	wake chan struct{}

	mu     sync.Mutex
	msgs   []*sarama.ConsumerMessage
	done   bool
	paused bool
}

func newBacklog(group sarama.ConsumerGroup, topic string, partition int32) *backlog {
	return &backlog{
		group:     group,
		partition: map[string][]int32{topic: {partition}},
		wake:      make(chan struct{}, 1),
	}
}

// fill queues the messages of in until it closes.
func (b *backlog) fill(in <-chan *sarama.ConsumerMessage) {
	for km := range in {
		b.mu.Lock()
		b.msgs = append(b.msgs, km)
		if len(b.msgs) >= backlogMax && !b.paused {
			b.paused = true
			b.group.Pause(b.partition)
		}
		b.mu.Unlock()
		b.signal()
	}
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
	b.signal()
}

func (b *backlog) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// next returns the oldest queued message, waiting for one. It returns false
// when ctx ends or the claim closed with nothing left.
func (b *backlog) next(ctx context.Context) (*sarama.ConsumerMessage, bool) {
	for {
		if ctx.Err() != nil {
			return nil, false
		}
		b.mu.Lock()
		if len(b.msgs) > 0 {
			km := b.msgs[0]
			b.msgs[0] = nil
			b.msgs = b.msgs[1:]
			if b.paused && len(b.msgs) <= backlogMax/2 {
				b.paused = false
				b.group.Resume(b.partition)
			}
			b.mu.Unlock()
			return km, true
		}
		done := b.done
		b.mu.Unlock()
		if done {
			return nil, false
		}
		select {
		case <-b.wake:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// holdUntil keeps the partition paused until due (a delayed message at the
// head of a retry topic that is not due yet), without polling: fetching
// stops, the rest of the group goes on. It returns false when ctx ends
// first.
func (b *backlog) holdUntil(ctx context.Context, due time.Time) bool {
	wait := time.Until(due)
	if wait <= 0 {
		return true
	}
	b.mu.Lock()
	if !b.paused {
		b.paused = true
		b.group.Pause(b.partition)
	}
	b.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return false
	}
	b.mu.Lock()
	if b.paused && len(b.msgs) <= backlogMax/2 {
		b.paused = false
		b.group.Resume(b.partition)
	}
	b.mu.Unlock()
	return true
}

type ctxKey int

const (
	keyCtxKey ctxKey = iota
	partitionCtxKey
	offsetCtxKey
	timestampCtxKey
)

func withRecord(ctx context.Context, km *sarama.ConsumerMessage) context.Context {
	ctx = context.WithValue(ctx, keyCtxKey, km.Key)
	ctx = context.WithValue(ctx, partitionCtxKey, km.Partition)
	ctx = context.WithValue(ctx, offsetCtxKey, km.Offset)
	return context.WithValue(ctx, timestampCtxKey, km.Timestamp)
}

// MessageKeyFromCtx returns the Kafka key of a received message from its
// context (msg.Context()); nil for a message without a key.
func MessageKeyFromCtx(ctx context.Context) ([]byte, bool) {
	key, ok := ctx.Value(keyCtxKey).([]byte)
	return key, ok
}

// MessagePartitionFromCtx returns the partition of a received message from
// its context.
func MessagePartitionFromCtx(ctx context.Context) (int32, bool) {
	p, ok := ctx.Value(partitionCtxKey).(int32)
	return p, ok
}

// MessagePartitionOffsetFromCtx returns the offset of a received message in
// its partition from its context.
func MessagePartitionOffsetFromCtx(ctx context.Context) (int64, bool) {
	o, ok := ctx.Value(offsetCtxKey).(int64)
	return o, ok
}

// MessageTimestampFromCtx returns the Kafka timestamp of a received message
// from its context.
func MessageTimestampFromCtx(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(timestampCtxKey).(time.Time)
	return t, ok
}
