package node

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
	"github.com/b2131a45/eventkit/transports/kafka"
)

// eventName is the event both sides exchange, registered at version 2.
const eventName = "interop.order_placed"

// OrderPlaced is the event. Its key orders it.
type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Seq     int    `json:"seq"`
}

func (e OrderPlaced) PartitionKey() string { return e.OrderID }

// registry registers OrderPlaced at version 2; version 1 (what a message
// without a version header is) has the same payload.
func registry(t *testing.T) *events.Registry {
	t.Helper()
	reg := events.NewRegistry()
	require.NoError(t, events.Register[OrderPlaced](reg, eventName, events.Version(2),
		events.Upcast(1, func(old []byte) ([]byte, error) { return old, nil })))
	return reg
}

var discard = slog.New(slog.DiscardHandler)

// open opens a transport whose logs are discarded; t closes it.
func open(t *testing.T, service, url string) *transports.Transport {
	t.Helper()
	tr, err := transports.OpenConfig(context.Background(), url, transports.Config{Logger: discard})
	if err != nil {
		testenv.Unavailable(t, service, err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// wiring is how a consumer is put together.
type wiring string

const (
	// withDefault is middleware.Default on the router (memory inbox).
	withDefault wiring = "default"
	// minimal is the processor alone, dead-lettering with
	// ProcessorConfig.DeadLetter.
	minimal wiring = "minimal"
)

// handled is one event the handler got.
type handled struct {
	env       events.Envelope
	event     OrderPlaced
	partition int32 // Kafka only
}

// consumer is a router running one typed handler of OrderPlaced.
type consumer struct {
	proc  *cqrs.Processor
	chain *middleware.Chain // nil when minimal

	changed chan struct{}
	mu      sync.Mutex
	got     []handled
}

// consume starts a router with one handler named handler (its consumer
// group) for topic; t stops it.
func consume(t *testing.T, tr *transports.Transport, reg *events.Registry, topic, handler string, w wiring) *consumer {
	t.Helper()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	c := &consumer{changed: make(chan struct{}, 1)}
	if w == withDefault {
		inbox, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
		require.NoError(t, err)
		c.chain, err = middleware.Default(middleware.DefaultConfig{
			Publisher:   tr.Publisher(),
			Subscribers: tr.Subscriber,
			Inbox:       inbox,
			Logger:      discard,
		})
		require.NoError(t, err)
		router.AddMiddleware(c.chain.Middlewares()...)
	}
	c.proc, err = cqrs.NewProcessor(router, tr.Subscriber, cqrs.ProcessorConfig{
		Registry:   reg,
		Topic:      func(string) string { return topic },
		DeadLetter: tr.Publisher(),
		Logger:     discard,
	})
	require.NoError(t, err)
	require.NoError(t, c.proc.AddHandlers(cqrs.NewHandler(handler, func(ctx context.Context, e *OrderPlaced) error {
		env, ok := events.EnvelopeFromContext(ctx)
		if !ok {
			return middleware.Permanent(errNoEnvelope)
		}
		h := handled{env: env, event: *e, partition: -1}
		if p, ok := kafka.MessagePartitionFromCtx(ctx); ok {
			h.partition = p
		}
		c.mu.Lock()
		c.got = append(c.got, h)
		c.mu.Unlock()
		select {
		case c.changed <- struct{}{}:
		default:
		}
		return nil
	})))
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- router.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		_ = router.Close()
		<-ran
	})
	select {
	case <-router.Running():
	case err := <-ran:
		t.Fatalf("router stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("router did not start in 30s")
	}
	return c
}

var errNoEnvelope = errors.New("no envelope in the handler's context")

// waitFor waits until the handler got n events and returns them in the
// order it got them.
func (c *consumer) waitFor(t *testing.T, n int, timeout time.Duration) []handled {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		got := len(c.got)
		c.mu.Unlock()
		if got >= n {
			break
		}
		select {
		case <-c.changed:
		case <-deadline.C:
			t.Fatalf("handled %d of %d events in %s (dead-lettered %d)", got, n, timeout, c.deadLettered())
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Len(t, c.got, n, "more events than sent")
	return append([]handled(nil), c.got...)
}

// deadLettered is how many messages the wiring dead-lettered.
func (c *consumer) deadLettered() int64 {
	if c.chain != nil {
		return c.chain.DeadLettered() + c.proc.DeadLettered()
	}
	return c.proc.DeadLettered()
}

// wantEnvelope is the envelope eventkit must read from what a Node script
// sent.
func wantEnvelope(t *testing.T, s *ceAttrs) events.Envelope {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, s.Time)
	require.NoError(t, err, "time %q", s.Time)
	env := events.Envelope{
		ID: s.ID, Name: s.Type, Source: s.Source, CorrelationID: s.CorrelationID, CausationID: s.CausationID,
		PartitionKey: s.PartitionKey, Version: 1, OccurredAt: at.UTC(), ContentType: s.DataContentType,
	}
	if s.EventVersion != "" {
		env.Version, err = strconv.Atoi(s.EventVersion)
		require.NoError(t, err)
	}
	if env.CorrelationID == "" {
		env.CorrelationID = env.ID
	}
	return env
}

// dataOf decodes what a script sent or read as data.
func dataOf(t *testing.T, raw json.RawMessage) OrderPlaced {
	t.Helper()
	var e OrderPlaced
	require.NoError(t, json.Unmarshal(raw, &e), "data %s", raw)
	return e
}

// recorder is a publisher that keeps a copy of what it publishes.
type recorder struct {
	message.Publisher
	mu   sync.Mutex
	msgs []*message.Message
}

func (r *recorder) Publish(topic string, msgs ...*message.Message) error {
	r.mu.Lock()
	for _, m := range msgs {
		c := message.NewMessage(m.UUID, append([]byte(nil), m.Payload...))
		c.Metadata = maps.Clone(m.Metadata)
		r.msgs = append(r.msgs, c)
	}
	r.mu.Unlock()
	return r.Publisher.Publish(topic, msgs...)
}

// published returns the envelopes and events of what was published, in
// order.
func (r *recorder) published(t *testing.T) []handled {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]handled, len(r.msgs))
	for i, m := range r.msgs {
		env, err := events.EnvelopeFromMessage(m)
		require.NoError(t, err)
		out[i].env = env
		require.NoError(t, json.Unmarshal(m.Payload, &out[i].event))
	}
	return out
}

// publishAll publishes n OrderPlaced events with a cqrs.Bus, one call each,
// seq first..first+n-1 on keys key-(i mod keys) (o-i when keys is 0). Each
// has the correlation id corr-go-i; every third one is published while
// "handling" cause-i, so it has that causation id. It returns what was
// published.
func publishAll(t *testing.T, pub message.Publisher, reg *events.Registry, topic string, n, keys, first int) []handled {
	t.Helper()
	rec := &recorder{Publisher: pub}
	bus, err := cqrs.NewBus(rec, cqrs.BusConfig{Registry: reg, Source: "eventkit-go", Topic: func(string) string { return topic }})
	require.NoError(t, err)
	for i := range n {
		e := OrderPlaced{OrderID: "o-" + strconv.Itoa(first+i), Seq: first + i}
		if keys > 0 {
			e = OrderPlaced{OrderID: "key-" + strconv.Itoa(i%keys), Seq: first + i/keys}
		}
		ctx := context.Background()
		if i%3 == 0 {
			ctx = events.ContextWithEnvelope(ctx, events.Envelope{ID: "cause-" + strconv.Itoa(i), Name: eventName})
		}
		ctx = events.WithCorrelationID(ctx, "corr-go-"+strconv.Itoa(i))
		require.NoError(t, bus.Publish(ctx, e))
	}
	return rec.published(t)
}
