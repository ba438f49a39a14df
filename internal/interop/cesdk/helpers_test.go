package cesdk_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmcqrs "github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/transports"
)

const (
	// total is how many events each test sends in each direction.
	total = 1000
	// batch is how many events share a correlation id (and, from eventkit,
	// one Bus.Publish call and one causing event).
	batch = 50
	// deliveryTimeout bounds the wait for all events of one test.
	deliveryTimeout = 45 * time.Second

	eventName    = "shop.order_placed"
	eventVersion = 2
	busSource    = "shop"        // BusConfig.Source of eventkit's publishers
	sdkSource    = "/cesdk/shop" // source attribute of the SDK's events
	jsonType     = "application/json"
)

// OrderPlaced is the registered Go type whose JSON is the data of every event.
type OrderPlaced struct {
	OrderID     string   `json:"order_id"`
	AmountCents int64    `json:"amount_cents"`
	Lines       []string `json:"lines"`
	Note        string   `json:"note"`
}

// PartitionKey makes eventkit's Bus stamp the order id as partition_key.
func (e OrderPlaced) PartitionKey() string { return e.OrderID }

func order(i int) OrderPlaced {
	return OrderPlaced{
		OrderID:     fmt.Sprintf("order-%04d", i),
		AmountCents: int64(i)*137 + 1,
		Lines:       []string{"sku-a", "sku-" + strconv.Itoa(i)},
		Note:        fmt.Sprintf("café ☕ «%d» \"quoted\"", i),
	}
}

func newRegistry(t *testing.T) *events.Registry {
	t.Helper()
	reg := events.NewRegistry()
	require.NoError(t, events.Register[OrderPlaced](reg, eventName, events.Version(eventVersion)))
	return reg
}

// record is one event as a comparable value: the envelope, or the
// CloudEvents context attributes, as text; the data decoded.
type record struct {
	ID, Type, Source, Time, DataContentType           string
	CorrelationID, CausationID, PartitionKey, Version string
	// Subject and Tenant are CloudEvents attributes eventkit has no key for
	// (the subject attribute, a foreign extension): eventkit keeps them as
	// ce_subject and ce_tenant metadata. Checked from the SDK to eventkit.
	Subject, Tenant string
	Data            OrderPlaced
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// collector gathers what a receiver got, by event id, until it has want
// distinct events or as many messages that are no valid event.
type collector struct {
	want int

	mu       sync.Mutex
	got      map[string][]record
	invalid  []string // what arrived that was no valid event, described
	complete chan struct{}
	closed   bool
}

func newCollector(want int) *collector {
	return &collector{want: want, got: map[string][]record{}, complete: make(chan struct{})}
}

func (c *collector) add(r record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got[r.ID] = append(c.got[r.ID], r)
	c.check()
}

func (c *collector) addInvalid(desc string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.invalid = append(c.invalid, desc)
	c.check()
}

func (c *collector) check() {
	if !c.closed && len(c.got)+len(c.invalid) >= c.want {
		c.closed = true
		close(c.complete)
	}
}

// wait returns what arrived once want events (or invalid messages) have,
// failing the test at the deadline.
func (c *collector) wait(t *testing.T, timeout time.Duration) (map[string][]record, []string) {
	t.Helper()
	select {
	case <-c.complete:
	case <-time.After(timeout):
		c.mu.Lock()
		defer c.mu.Unlock()
		t.Fatalf("after %s: %d of %d events arrived, %d invalid messages (first: %q)",
			timeout, len(c.got), c.want, len(c.invalid), first(c.invalid))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.got), slices.Clone(c.invalid)
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// requireAll checks that every wanted event arrived exactly once, equal
// field by field, and nothing else did.
func requireAll(t *testing.T, want map[string]record, got map[string][]record, invalid []string) {
	t.Helper()
	require.Empty(t, invalid, "messages that were no valid event")
	require.Len(t, want, total)
	bad := 0
	for _, id := range slices.Sorted(maps.Keys(want)) {
		rs := got[id]
		ok := assert.Len(t, rs, 1, "deliveries of event %s", id)
		if len(rs) > 0 {
			ok = assert.Equal(t, want[id], rs[0], "event %s", id) && ok
		}
		if !ok {
			if bad++; bad >= 3 {
				t.Fatalf("stopping after %d events that are wrong", bad)
			}
		}
	}
	for id := range got {
		assert.Contains(t, want, id, "an event that was never sent arrived")
	}
}

// sdkEvent is the i-th event the SDK sends, with every attribute eventkit
// maps, and what eventkit must make of it.
func sdkEvent(t *testing.T, i int, base time.Time) (event.Event, record) {
	t.Helper()
	o := order(i)
	e := cloudevents.NewEvent() // specversion 1.0
	e.SetID(uuid.NewString())
	e.SetType(eventName)
	e.SetSource(sdkSource)
	// Nanoseconds, so that a binding that truncates shows.
	e.SetTime(base.Add(time.Duration(i)*time.Millisecond + 123456*time.Nanosecond))
	e.SetSubject(o.OrderID)
	e.SetExtension(events.CloudEventsCorrelationID, fmt.Sprintf("corr-%02d", i/batch))
	e.SetExtension(events.CloudEventsCausationID, fmt.Sprintf("cause-%04d", i))
	e.SetExtension(events.CloudEventsPartitionKey, o.OrderID)
	e.SetExtension(events.CloudEventsVersion, eventVersion) // an Integer, as the SDK allows
	e.SetExtension("tenant", "acme")
	require.NoError(t, e.SetData(cloudevents.ApplicationJSON, o))
	require.NoError(t, e.Validate())
	return e, record{
		ID: e.ID(), Type: eventName, Source: sdkSource, Time: formatTime(e.Time()), DataContentType: jsonType,
		CorrelationID: fmt.Sprintf("corr-%02d", i/batch), CausationID: fmt.Sprintf("cause-%04d", i),
		PartitionKey: o.OrderID, Version: strconv.Itoa(eventVersion),
		Subject: o.OrderID, Tenant: "acme", Data: o,
	}
}

// sendWithSDK sends total events through an SDK client over p, in binary
// mode or (structured) in structured mode, and returns what eventkit must
// receive by event id. adjust, if set, edits what is wanted (a binding that
// loses precision).
func sendWithSDK(t *testing.T, p protocol.Sender, structured bool, adjust func(*record)) map[string]record {
	t.Helper()
	client, err := cloudevents.NewClient(p)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), deliveryTimeout)
	defer cancel()
	if structured {
		ctx = binding.WithForceStructured(ctx)
	} else {
		ctx = binding.WithForceBinary(ctx)
	}
	base := time.Now().UTC().Truncate(time.Second)
	want := make(map[string]record, total)
	for i := range total {
		e, r := sdkEvent(t, i, base)
		if res := client.Send(ctx, e); !protocol.IsACK(res) {
			t.Fatalf("SDK send of event %d: %v", i, res)
		}
		if adjust != nil {
			adjust(&r)
		}
		want[r.ID] = r
	}
	return want
}

// consumeWithEventkit runs a cqrs processor with one typed handler on topic
// (its consumer group is handler) until the returned stop is called. Every
// event the handler gets goes to col with its envelope, its ce_ metadata and
// its payload. Anything that does not decode is dead-lettered
// (ProcessorConfig.DeadLetter), which stop reports as a failure.
func consumeWithEventkit(t *testing.T, tr *transports.Transport, reg *events.Registry, topic, handler string, col *collector) (stop func()) {
	t.Helper()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	proc, err := cqrs.NewProcessor(router, tr.Subscriber, cqrs.ProcessorConfig{
		Registry:   reg,
		Topic:      func(string) string { return topic },
		DeadLetter: tr.Publisher(),
	})
	require.NoError(t, err)
	require.NoError(t, proc.AddHandlers(cqrs.NewHandler(handler, func(ctx context.Context, e *OrderPlaced) error {
		env, ok := events.EnvelopeFromContext(ctx)
		if !ok {
			return fmt.Errorf("no envelope in the handler's context")
		}
		md := wmcqrs.OriginalMessageFromCtx(ctx).Metadata
		col.add(record{
			ID: env.ID, Type: env.Name, Source: env.Source, Time: formatTime(env.OccurredAt), DataContentType: env.ContentType,
			CorrelationID: env.CorrelationID, CausationID: env.CausationID, PartitionKey: env.PartitionKey,
			Version: strconv.Itoa(env.Version),
			Subject: md.Get(events.CloudEventsExtensionPrefix + "subject"), Tenant: md.Get(events.CloudEventsExtensionPrefix + "tenant"),
			Data: *e,
		})
		return nil
	})))
	runErr := make(chan error, 1)
	go func() { runErr <- router.Run(context.Background()) }()
	select {
	case <-router.Running():
	case err := <-runErr:
		t.Fatalf("router stopped before running: %v", err)
	case <-time.After(deliveryTimeout):
		t.Fatal("router not running within the deadline")
	}
	return func() {
		t.Helper()
		require.NoError(t, router.Close())
		require.NoError(t, <-runErr)
		assert.Zero(t, proc.DeadLettered(), "messages eventkit could not decode and dead-lettered (see the log above for why)")
	}
}

// recordingPublisher records what eventkit's Bus publishes, by event id.
type recordingPublisher struct {
	message.Publisher
	mu   sync.Mutex
	sent map[string]*message.Message
}

func (p *recordingPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	for _, m := range msgs {
		p.sent[m.Metadata.Get(events.KeyEventID)] = m.Copy()
	}
	p.mu.Unlock()
	return p.Publisher.Publish(topic, msgs...)
}

// publishWithBus publishes total events to topic through a cqrs.Bus on tr,
// in batches that each have their own causing event and correlation id, and
// returns what a CloudEvents receiver must get by event id. The id and time
// are what the Bus stamped; the rest is known beforehand.
func publishWithBus(t *testing.T, tr *transports.Transport, reg *events.Registry, topic string) map[string]record {
	t.Helper()
	rec := &recordingPublisher{Publisher: tr.Publisher(), sent: map[string]*message.Message{}}
	bus, err := cqrs.NewBus(rec, cqrs.BusConfig{Registry: reg, Source: busSource, Topic: func(string) string { return topic }})
	require.NoError(t, err)
	byOrder := make(map[string]record, total)
	for b := range total / batch {
		parent := events.Envelope{ID: uuid.NewString(), Name: "shop.checkout_completed", CorrelationID: fmt.Sprintf("corr-%02d", b)}
		ctx := events.ContextWithEnvelope(context.Background(), parent)
		evts := make([]any, 0, batch)
		for i := b * batch; i < (b+1)*batch; i++ {
			o := order(i)
			evts = append(evts, o)
			byOrder[o.OrderID] = record{
				Type: eventName, Source: busSource, DataContentType: jsonType,
				CorrelationID: parent.CorrelationID, CausationID: parent.ID, PartitionKey: o.OrderID,
				Version: strconv.Itoa(eventVersion), Data: o,
			}
		}
		require.NoError(t, bus.Publish(ctx, evts...))
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Len(t, rec.sent, total)
	want := make(map[string]record, total)
	for id, m := range rec.sent {
		var o OrderPlaced
		require.NoError(t, json.Unmarshal(m.Payload, &o))
		r := byOrder[o.OrderID]
		r.ID = id
		at, err := events.ParseTime(m.Metadata.Get(events.KeyOccurredAt))
		require.NoError(t, err)
		r.Time = formatTime(at)
		want[id] = r
	}
	return want
}

// recordOfSDK is a received CloudEvent as a record: its context attributes
// and its data decoded into the Go type.
func recordOfSDK(e *event.Event) (record, error) {
	ext := func(name string) string {
		v, ok := e.Extensions()[name]
		if !ok {
			return ""
		}
		s, err := types.Format(v)
		if err != nil {
			return fmt.Sprintf("<%T %v>", v, v)
		}
		return s
	}
	r := record{
		ID: e.ID(), Type: e.Type(), Source: e.Source(), Time: formatTime(e.Time()), DataContentType: e.DataContentType(),
		CorrelationID: ext(events.CloudEventsCorrelationID), CausationID: ext(events.CloudEventsCausationID),
		PartitionKey: ext(events.CloudEventsPartitionKey), Version: ext(events.CloudEventsVersion),
	}
	if err := e.DataAs(&r.Data); err != nil {
		return r, fmt.Errorf("data %q does not decode into %T: %w", e.Data(), r.Data, err)
	}
	return r, nil
}

// receiveWithSDK reads messages from an SDK receiver into col until col is
// complete or ctx ends. Each message must be in content mode enc; it is
// turned into an event with binding.ToEvent and validated. One that is not,
// or is no valid event, is described by describe and counted as invalid.
// Every message is acked.
func receiveWithSDK(ctx context.Context, r protocol.Receiver, col *collector, enc binding.Encoding, describe func(binding.Message) string) error {
	for {
		select {
		case <-col.complete:
			return nil
		default:
		}
		m, err := r.Receive(ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var rec record
		if got := m.ReadEncoding(); got != enc {
			err = fmt.Errorf("content mode %s, want %s", got, enc)
		} else {
			var e *event.Event
			if e, err = binding.ToEvent(ctx, m); err == nil {
				err = e.Validate()
			}
			if err == nil {
				rec, err = recordOfSDK(e)
			}
		}
		if err != nil {
			col.addInvalid(fmt.Sprintf("%v: %s", err, describe(m)))
		} else {
			col.add(rec)
		}
		if err := m.Finish(nil); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
	}
}

// withQuery adds a query parameter to a URL.
func withQuery(rawURL, param string) string {
	if strings.Contains(rawURL, "?") {
		return rawURL + "&" + param
	}
	return rawURL + "?" + param
}
