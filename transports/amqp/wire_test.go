package amqp_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports/amqp"
	"github.com/b2131a45/eventkit/transports/transporttest"
)

// rawReader consumes topic's exchange with amqp091 itself, through an
// exclusive queue declared before anything is published.
func rawReader(t *testing.T, topic string) func() transporttest.Record {
	t.Helper()
	conn, err := amqp091.Dial(testenv.AMQPURL())
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.ExchangeDeclare(topic, "fanout", true, false, false, false, nil))
	t.Cleanup(func() {
		if ch, err := conn.Channel(); err == nil {
			_ = ch.ExchangeDelete(topic, false, false)
		}
	})
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(q.Name, "", topic, false, nil))
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	require.NoError(t, err)
	return func() transporttest.Record {
		t.Helper()
		select {
		case d := <-deliveries:
			return record(d)
		case <-time.After(30 * time.Second):
			t.Fatalf("no record on %s within 30s", topic)
			return transporttest.Record{}
		}
	}
}

// record is a delivery as transporttest sees it.
func record(d amqp091.Delivery) transporttest.Record {
	rec := transporttest.Record{Headers: map[string]string{}, Properties: map[string]string{}, Body: d.Body}
	for k, v := range d.Headers {
		if s, ok := v.(string); ok {
			rec.Headers[k] = s
		}
	}
	set := func(k, v string) {
		if v != "" {
			rec.Properties[k] = v
		}
	}
	set("message-id", d.MessageId)
	set("type", d.Type)
	set("content-type", d.ContentType)
	set("correlation-id", d.CorrelationId)
	set("app-id", d.AppId)
	if !d.Timestamp.IsZero() {
		set("timestamp", d.Timestamp.UTC().Format(time.RFC3339))
	}
	if d.DeliveryMode == amqp091.Persistent {
		set("delivery-mode", "persistent")
	}
	return rec
}

// TestWire checks what each wire form lays on RabbitMQ, read with amqp091,
// and that subscribers read it back.
func TestWire(t *testing.T) {
	t.Parallel()
	cfg := config(t)
	transporttest.RunWire(t, transporttest.WireConfig{
		Open: func(t *testing.T, w events.Wire) transporttest.Transport {
			c := cfg
			c.Wire = w
			return newTransport(t, c)
		},
		Reader: rawReader,
		Binding: transporttest.Binding{
			AttributePrefix: amqp.CloudEventsHeaderPrefix,
			ContentType:     "content-type",
			Properties: map[string]string{
				events.KeyEventID:       "message-id",
				events.KeyName:          "type",
				events.KeyCorrelationID: "correlation-id",
				events.KeySource:        "app-id",
				events.KeyOccurredAt:    "timestamp",
			},
		},
	})
}

// TestForeignProducers reads what producers that know nothing of eventkit
// send with amqp091 (as amqplib, pika or the Java client would): only the
// standard properties; the standard properties with a media-type parameter
// and a timestamp in epoch milliseconds; and the CloudEvents AMQP binding's
// "cloudEvents:" and "cloudEvents_" application properties.
func TestForeignProducers(t *testing.T) {
	t.Parallel()
	cfg := config(t)
	tr := newTransport(t, cfg)
	topic := testenv.Name(t, "foreign")
	sub, err := tr.Subscriber("g")
	require.NoError(t, err)
	require.NoError(t, sub.(message.SubscribeInitializer).SubscribeInitialize(topic))
	t.Cleanup(func() { deleteQueues(t, topic, "g") })

	conn, err := amqp091.Dial(cfg.URL)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	pubs := []amqp091.Publishing{
		{MessageId: "std-1", Type: "orders.order_created", ContentType: "application/json", Timestamp: at,
			CorrelationId: "corr-1", AppId: "node-orders", Body: []byte(`{"id":1}`)},
		{MessageId: "std-2", Type: "orders.order_created", ContentType: "application/json; charset=utf-8",
			Headers: amqp091.Table{"occurred_at": "1772600767000"}, Body: []byte(`{"id":2}`)},
		{ContentType: "application/json", Body: []byte(`{"id":3}`), Headers: amqp091.Table{
			"cloudEvents:specversion": "1.0", "cloudEvents:id": "ce-3", "cloudEvents:type": "orders.order_created",
			"cloudEvents:source": "node-orders", "cloudEvents:time": "2026-03-04T05:06:07Z", "cloudEvents:correlationid": "corr-3"}},
		{ContentType: "application/json", Body: []byte(`{"id":4}`), Headers: amqp091.Table{
			"cloudEvents_specversion": "1.0", "cloudEvents_id": "ce-4", "cloudEvents_type": "orders.order_created",
			"cloudEvents_source": "node-orders", "cloudEvents_eventversion": int32(2)}},
	}
	for _, p := range pubs {
		require.NoError(t, ch.PublishWithContext(context.Background(), topic, "", false, false, p))
	}
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	got := map[string]events.Envelope{}
	for range pubs {
		select {
		case m := <-msgs:
			m.Ack()
			env, err := events.EnvelopeFromMessage(m)
			require.NoError(t, err, "metadata %v", m.Metadata)
			require.Equal(t, env.ID, m.UUID)
			got[env.ID] = env
		case <-time.After(30 * time.Second):
			t.Fatalf("received %d of %d", len(got), len(pubs))
		}
	}
	require.Equal(t, events.Envelope{ID: "std-1", Name: "orders.order_created", CorrelationID: "corr-1", Source: "node-orders",
		Version: 1, OccurredAt: at, ContentType: "application/json"}, got["std-1"])
	require.Equal(t, at, got["std-2"].OccurredAt, "epoch milliseconds")
	require.Equal(t, "application/json; charset=utf-8", got["std-2"].ContentType)
	require.Equal(t, "std-2", got["std-2"].CorrelationID, "no correlation id: the event's own")
	require.Equal(t, events.Envelope{ID: "ce-3", Name: "orders.order_created", CorrelationID: "corr-3", Source: "node-orders",
		Version: 1, OccurredAt: at, ContentType: "application/json"}, got["ce-3"])
	require.Equal(t, 2, got["ce-4"].Version)
}

// TestAMQP10BridgedHeaders reads a message as RabbitMQ 3.x hands an AMQP
// 1.0 client's message (here the CloudEvents Go SDK's AMQP binding, binary
// mode) to an AMQP 0-9-1 consumer: its application properties and
// properties encoded in x-amqp-1.0-* headers. The bytes are what RabbitMQ
// 3.10.8 delivered.
func TestAMQP10BridgedHeaders(t *testing.T) {
	t.Parallel()
	appProps := "\x00St\xd1\x00\x00\x00\xbc\x00\x00\x00\f\xa1\x0ecloudEvents:id\xa1\x04id-1\xa1\x12cloudEvents:source\xa1\bnode-svc" +
		"\xa1\x17cloudEvents:specversion\xa1\x031.0\xa1\x10cloudEvents:type\xa1\x14orders.order_created\xa1\x10cloudEvents:time" +
		"\x83\x00\x00\x01\xa27\xf4\x1a\xac\xa1\x19cloudEvents:correlationid\xa1\x06corr-1"
	props := "\x00Ss\xd0\x00\x00\x00\x1c\x00\x00\x00\a@@@@@@\xa3\x10application/json"
	msg := amqp.UnmarshalForTest(amqp091.Delivery{
		ContentType: "application/json", Type: "binary", Body: []byte(`{"order_id":"o-1"}`),
		Headers: amqp091.Table{"x-amqp-1.0-app-properties": appProps, "x-amqp-1.0-properties": props},
	})
	env, err := events.EnvelopeFromMessage(msg)
	require.NoError(t, err, "metadata %v", msg.Metadata)
	require.Equal(t, "id-1", env.ID)
	require.Equal(t, "orders.order_created", env.Name, "the name is CloudEvents' type, not RabbitMQ's type property")
	require.Equal(t, "node-svc", env.Source)
	require.Equal(t, "corr-1", env.CorrelationID)
	require.Equal(t, "application/json", env.ContentType)
	require.Equal(t, time.UnixMilli(0x1a237f41aac).UTC(), env.OccurredAt)

	// Truncated or hostile sections are left out, never a panic.
	for i := range len(appProps) {
		_ = amqp.UnmarshalForTest(amqp091.Delivery{Headers: amqp091.Table{"x-amqp-1.0-app-properties": appProps[:i], "x-amqp-1.0-properties": props[:min(i, len(props))]}})
	}
	_ = amqp.UnmarshalForTest(amqp091.Delivery{Headers: amqp091.Table{"x-amqp-1.0-app-properties": "\x00St\xd1\xff\xff\xff\xff\xff\xff\xff\xff"}})
}

// TestHooks: OnPublish sets what eventkit does not, and its error rejects
// the message for good; OnDelivery reads it back.
func TestHooks(t *testing.T) {
	t.Parallel()
	cfg := config(t)
	cfg.OnPublish = func(msg *message.Message, p *amqp091.Publishing) error {
		if msg.Metadata.Get("refuse") != "" {
			return errors.New("refused by the hook")
		}
		p.Priority = 7
		p.Expiration = "60000"
		return nil
	}
	cfg.OnDelivery = func(d amqp091.Delivery, msg *message.Message) {
		msg.Metadata.Set("priority", string(rune('0'+d.Priority)))
	}
	tr := newTransport(t, cfg)
	topic := testenv.Name(t, "hooks")
	sub, err := tr.Subscriber("g")
	require.NoError(t, err)
	require.NoError(t, sub.(message.SubscribeInitializer).SubscribeInitialize(topic))
	t.Cleanup(func() { deleteQueues(t, topic, "g") })

	refused := message.NewMessage("r-1", nil)
	refused.Metadata.Set("refuse", "yes")
	err = tr.Publisher().Publish(topic, refused)
	require.ErrorIs(t, err, amqp.ErrRejected)
	require.True(t, strings.Contains(err.Error(), "refused by the hook"), err)

	require.NoError(t, tr.Publisher().Publish(topic, message.NewMessage("ok-1", nil)))
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	select {
	case m := <-msgs:
		m.Ack()
		require.Equal(t, "ok-1", m.UUID)
		require.Equal(t, "7", m.Metadata.Get("priority"))
	case <-time.After(30 * time.Second):
		t.Fatal("not received")
	}
}

func TestParseURLWire(t *testing.T) {
	t.Parallel()
	cfg, err := amqp.ParseURL("amqp://guest:guest@localhost:5672/?wire=cloudevents")
	require.NoError(t, err)
	require.Equal(t, events.WireCloudEvents, cfg.Wire)
	_, err = amqp.ParseURL("amqp://guest:guest@localhost:5672/?wire=soap")
	require.ErrorContains(t, err, "wire")
	_, err = amqp.New(context.Background(), amqp.Config{URL: "amqp://localhost/", Wire: "soap"})
	require.ErrorContains(t, err, "Config.Wire")
}

// deleteQueues deletes the group's queue and the topic's exchange.
func deleteQueues(t *testing.T, topic string, groups ...string) {
	conn, err := amqp091.Dial(testenv.AMQPURL())
	if err != nil {
		return
	}
	defer conn.Close()
	for _, g := range groups {
		if ch, err := conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(amqp.QueueName(topic, g), false, false, false)
			_ = ch.Close()
		}
	}
	if ch, err := conn.Channel(); err == nil {
		_ = ch.ExchangeDelete(topic, false, false)
		_ = ch.Close()
	}
}
