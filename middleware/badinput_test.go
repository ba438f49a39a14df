package middleware_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
	"github.com/b2131a45/eventkit/transports/amqp"
)

// Parcel is the event of the bad-input test: version 2, with an upcaster
// from 1.
type Parcel struct {
	ID   string `json:"id"`
	Note string `json:"note,omitempty"`
}

// TestBadInputEndsInTheDLQWithAReason publishes, between good events, every
// kind of bad input a consumer meets: corrupt JSON, an unknown event name, a
// version from the future, missing and malformed envelope headers, a 10 MB
// payload, invalid UTF-8, a wrong content type and a handler that panics. It
// runs them through cqrs typed handlers behind middleware.Default on
// RabbitMQ opened with transports.Open. Each bad one ends in the dead-letter
// topic with its reason and error; the handler never sees it; the process
// does not crash; every good event behind it is handled once.
func TestBadInputEndsInTheDLQWithAReason(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tr, err := transports.Open(ctx, testenv.AMQPURL())
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { _ = tr.Close() })

	reg := events.NewRegistry()
	require.NoError(t, events.Register[Parcel](reg, "bad.parcel", events.Version(2),
		events.Upcast(1, func(old []byte) ([]byte, error) { return old, nil })))
	prefix := testenv.Name(t, "bad")
	topicOf := func(eventName string) string { return prefix + "." + eventName }
	topic := topicOf("bad.parcel")
	dlqTopic := middleware.DeadLetterTopic(topic)
	const handler = "bad.parcel-handler"
	t.Cleanup(func() { deleteAMQP(t, [][2]string{{topic, handler}, {dlqTopic, middleware.DeadLetterGroupDefault}}) })

	inbox, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
	require.NoError(t, err)
	chain, err := middleware.Default(middleware.DefaultConfig{
		Publisher:    tr.Publisher(),
		Inbox:        inbox,
		Subscribers:  tr.Subscriber,
		Retry:        middleware.RetryConfig{MaxAttempts: 3, InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond},
		DelayedRetry: fastDelays,
		Logger:       discard,
	})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	router.AddMiddleware(chain.Middlewares()...)
	proc, err := cqrs.NewProcessor(router, tr.Subscriber, cqrs.ProcessorConfig{DeadLetter: tr.Publisher(), Registry: reg, Topic: topicOf})
	require.NoError(t, err)
	var mu sync.Mutex
	handled := map[string]int{}
	require.NoError(t, proc.AddHandlers(cqrs.NewHandler(handler, func(ctx context.Context, p *Parcel) error {
		if p.Note == "panic" {
			var m map[string]int
			m["boom"]++ // assignment to entry in nil map
		}
		mu.Lock()
		handled[p.ID]++
		mu.Unlock()
		return nil
	})))

	newMsg := func(p Parcel) *message.Message {
		m, err := reg.NewMessage(ctx, p, "test")
		require.NoError(t, err)
		return m
	}
	type bad struct {
		msg    *message.Message
		reason middleware.Reason
		err    string // in dlq_error
	}
	var bads []bad
	add := func(reason middleware.Reason, errText string, mutate func(*message.Message)) {
		m := newMsg(Parcel{ID: "bad"})
		mutate(m)
		bads = append(bads, bad{m, reason, errText})
	}
	add(middleware.ReasonDecode, "unexpected end of JSON input", func(m *message.Message) { m.Payload = []byte(`{"id":`) })
	add(middleware.ReasonDecode, "invalid character", func(m *message.Message) { m.Payload = []byte(`not json at all`) })
	add(middleware.ReasonUnknownEvent, `"bad.no_such_event"`, func(m *message.Message) { m.Metadata.Set(events.KeyName, "bad.no_such_event") })
	add(middleware.ReasonUnsupportedVersion, "v99 is newer than registered v2", func(m *message.Message) { m.Metadata.Set(events.KeyVersion, "99") })
	add(middleware.ReasonMissingName, `names no event`, func(m *message.Message) { delete(m.Metadata, events.KeyName) })
	add(middleware.ReasonMissingID, `has no event id`, func(m *message.Message) { delete(m.Metadata, events.KeyEventID); m.UUID = "" })
	add(middleware.ReasonUnsupportedVersion, `header "event_version"`, func(m *message.Message) { m.Metadata.Set(events.KeyVersion, "two") })
	add(middleware.ReasonUnsupportedVersion, `header "event_version"`, func(m *message.Message) { m.Metadata.Set(events.KeyVersion, "0") })
	add(middleware.ReasonDecode, "structured CloudEvent", func(m *message.Message) {
		m.Metadata.Set(events.KeyContentType, "application/cloudevents+json; charset=utf-8")
		m.Payload = []byte(`{"specversion":"1.0","id":`)
	})
	add(middleware.ReasonDecode, `header "occurred_at"`, func(m *message.Message) { m.Metadata.Set(events.KeyOccurredAt, "yesterday") })
	add(middleware.ReasonDecode, `header "content_type"`, func(m *message.Message) { m.Metadata.Set(events.KeyContentType, "application/xml") })
	add(middleware.ReasonDecode, "payload too large", func(m *message.Message) {
		m.Payload = []byte(`{"id":"huge","note":"` + strings.Repeat("x", 10<<20) + `"}`)
	})
	add(middleware.ReasonDecode, "not valid UTF-8", func(m *message.Message) { m.Payload = []byte("{\"id\":\"utf\",\"note\":\"\xff\xfe\xfd\"}") })
	add(middleware.ReasonPanic, "assignment to entry in nil map", func(m *message.Message) {
		*m = *newMsg(Parcel{ID: "panics", Note: "panic"})
	})

	// Good events before, between and after the bad ones.
	var good []string
	var all []*message.Message
	for i, b := range bads {
		g := newMsg(Parcel{ID: "good-" + string(rune('a'+i))})
		good = append(good, g.UUID)
		all = append(all, g, b.msg)
	}
	last := newMsg(Parcel{ID: "good-last"})
	all = append(all, last)

	// Declare the handler's queue before publishing; the chain declares the
	// dead-letter queue itself (DefaultConfig.Subscribers).
	sub, err := tr.Subscriber(handler)
	require.NoError(t, err)
	require.NoError(t, sub.(message.SubscribeInitializer).SubscribeInitialize(topic))
	require.NoError(t, sub.Close())
	require.NoError(t, tr.Publisher().Publish(topic, all...))
	startRouter(t, router)

	wantGood := len(bads) + 1
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for id, c := range handled {
			if strings.HasPrefix(id, "good-") && c == 1 {
				n++
			}
		}
		return n == wantGood
	}, 60*time.Second, 10*time.Millisecond, "every good event is handled, none held up behind a bad one")

	byID := map[string]middleware.DeadLetter{}
	require.Eventually(t, func() bool {
		listed, err := middleware.ListDLQ(ctx, tr.Subscriber, tr.Publisher(), middleware.ReplayConfig{Topic: dlqTopic, IdleTimeout: time.Second, Logger: discard})
		require.NoError(t, err)
		for _, dl := range listed {
			byID[dl.EventID] = dl
		}
		return len(byID) >= len(bads)
	}, 60*time.Second, 10*time.Millisecond)
	require.Len(t, byID, len(bads), "only the bad events are dead-lettered")
	for _, b := range bads {
		dl, ok := byID[b.msg.UUID]
		if b.msg.UUID == "" { // no id to find it by: the dead letter got an id of its own
			for _, d := range byID {
				if d.Reason == middleware.ReasonMissingID {
					dl, ok = d, true
				}
			}
		}
		require.True(t, ok, "%s (%s) not dead-lettered", b.reason, b.err)
		require.Equal(t, b.reason, dl.Reason, dl.Error)
		require.Contains(t, dl.Error, b.err)
		require.Equal(t, topic, dl.OriginalTopic)
		require.Equal(t, handler, dl.Handler)
		require.Equal(t, len(b.msg.Payload), len(dl.Message.Payload), "payload kept as it was")
		if b.reason == middleware.ReasonPanic {
			require.Equal(t, 3, dl.Attempts, "a panic is retried")
			require.NotEmpty(t, dl.Stack)
		} else {
			require.Equal(t, 1, dl.Attempts, "bad input is permanent: not retried")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	require.Zero(t, handled["bad"], "the handler never saw bad input")
	require.Zero(t, handled["huge"]+handled["utf"]+handled["panics"])
	t.Logf("published %d (%d good, %d bad): handled %d good, dead-lettered %d, duplicates dropped %d",
		len(all), wantGood, len(bads), len(handled), chain.DeadLettered(), chain.Duplicates())
}

// deleteAMQP deletes the exchanges and queues (topic, group) a test made.
func deleteAMQP(t *testing.T, names [][2]string) {
	conn, err := amqp091.Dial(testenv.AMQPURL())
	if err != nil {
		return
	}
	defer conn.Close()
	for _, n := range names {
		if ch, err := conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(amqp.QueueName(n[0], n[1]), false, false, false)
			_ = ch.ExchangeDelete(n[0], false, false)
			_ = ch.Close()
		}
	}
}
