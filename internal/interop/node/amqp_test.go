package node

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
	"github.com/b2131a45/eventkit/transports/amqp"
)

// amqpURL is the RabbitMQ URL with the wire form w.
func amqpURL(w events.Wire) string {
	u := testenv.AMQPURL()
	if w == "" {
		return u
	}
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + "wire=" + string(w)
}

// openAMQP opens the RabbitMQ transport with the wire form w. Call
// cleanupAMQP first, so that the queues are deleted after the transport
// closed (a live subscriber would declare its queue again).
func openAMQP(t *testing.T, w events.Wire) *transports.Transport {
	t.Helper()
	return open(t, "RabbitMQ", amqpURL(w))
}

// cleanupAMQP deletes, when t ends, what a test creates on RabbitMQ: the
// topic's exchange and the queues, and the dead-letter topic's exchange and
// queue. Then it checks that none of them is left.
func cleanupAMQP(t *testing.T, topic string, queues ...string) {
	t.Helper()
	dlq := middleware.DeadLetterTopic(topic)
	queues = append(queues, amqp.QueueName(dlq, middleware.DeadLetterGroupDefault))
	exchanges := []string{topic, dlq}
	t.Cleanup(func() {
		conn, err := amqp091.Dial(testenv.AMQPURL())
		if err != nil {
			t.Errorf("clean up RabbitMQ: %v", err)
			return
		}
		defer conn.Close()
		// Each operation on its own channel: a failed one closes its channel.
		on := func(op func(ch *amqp091.Channel) error) error {
			ch, err := conn.Channel()
			if err != nil {
				return err
			}
			defer ch.Close()
			return op(ch)
		}
		for _, q := range queues {
			if err := on(func(ch *amqp091.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err }); err != nil && !notFound(err) {
				t.Errorf("delete queue %s: %v", q, err)
			}
		}
		for _, x := range exchanges {
			if err := on(func(ch *amqp091.Channel) error { return ch.ExchangeDelete(x, false, false) }); err != nil && !notFound(err) {
				t.Errorf("delete exchange %s: %v", x, err)
			}
		}
		for _, q := range queues {
			err := on(func(ch *amqp091.Channel) error {
				_, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
				return err
			})
			if !notFound(err) {
				t.Errorf("queue %s left behind (%v)", q, err)
			}
		}
		for _, x := range exchanges {
			err := on(func(ch *amqp091.Channel) error {
				return ch.ExchangeDeclarePassive(x, amqp091.ExchangeFanout, true, false, false, false, nil)
			})
			if !notFound(err) {
				t.Errorf("exchange %s left behind (%v)", x, err)
			}
		}
	})
}

func notFound(err error) bool {
	var ae *amqp091.Error
	return errors.As(err, &ae) && ae.Code == amqp091.NotFound
}

// initGroup declares the group's queue for topic, as a consumer does before
// producers start.
func initGroup(t *testing.T, tr *transports.Transport, topic, group string) {
	t.Helper()
	sub, err := tr.Subscriber(group)
	require.NoError(t, err)
	defer sub.Close()
	require.NoError(t, sub.(message.SubscribeInitializer).SubscribeInitialize(topic))
}

// queueDepth is how many messages wait in queue.
func queueDepth(t *testing.T, queue string) int {
	t.Helper()
	conn, err := amqp091.Dial(testenv.AMQPURL())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	require.NoError(t, err)
	return q.Messages
}

// TestAMQPNodeToEventkit: amqplib publishes 1,000 events in turn in these
// forms — only the AMQP standard properties (a charset in the content type,
// the timestamp in seconds, no headers), binary CloudEvents ("cloudEvents:"
// application properties) and structured CloudEvents from the JS SDK, and
// two more binary prefixes: the SDK's HTTP binary mode relayed ("ce-") and
// "cloudEvents_" — and eventkit (transports.Open, a typed handler,
// middleware.Default) handles each once, in the order sent, with the
// envelope Node sent.
func TestAMQPNodeToEventkit(t *testing.T) {
	t.Parallel()
	nodeBin(t)
	const n, handler = 1000, "interop-consumer"
	topic := testenv.Name(t, "n2e")
	cleanupAMQP(t, topic, amqp.QueueName(topic, handler))
	tr := openAMQP(t, "")
	reg := registry(t)
	initGroup(t, tr, topic, handler)
	c := consume(t, tr, reg, topic, handler, withDefault)

	sent := produce(t, "amqp_produce.js", n,
		"AMQP_URL="+testenv.AMQPURL(), "EXCHANGE="+topic, "EVENT_TYPE="+eventName,
		cases(n, "properties", "binary", "structured", "http_binary", "binary_underscore"))
	got := c.waitFor(t, n, time.Minute)

	ids := map[string]bool{}
	for i, s := range sent {
		require.Equal(t, wantEnvelope(t, s.Event), got[i].env, "event %d (%s): envelope, in the order sent", i, s.Case)
		require.Equal(t, dataOf(t, s.Event.Data), got[i].event, "event %d (%s): payload", i, s.Case)
		ids[got[i].env.ID] = true
	}
	require.Len(t, ids, n, "every event once")
	require.Zero(t, c.chain.Duplicates())
	require.Zero(t, c.deadLettered())
	require.Zero(t, queueDepth(t, amqp.QueueName(topic, handler)))
}

// TestAMQPEventkitToNode: eventkit publishes 1,000 events with cqrs.Bus in
// each wire form, and amqplib reads them: the standard AMQP properties in
// every form, eventkit's headers in its form, and CloudEvents the JS SDK
// validates in the CloudEvents forms, each equal field by field to what was
// published, in order.
func TestAMQPEventkitToNode(t *testing.T) {
	t.Parallel()
	nodeBin(t)
	const n = 1000
	for _, w := range []events.Wire{events.WireEventkit, events.WireCloudEvents, events.WireCloudEventsStructured} {
		t.Run(string(w), func(t *testing.T) {
			t.Parallel()
			topic := testenv.Name(t, "e2n")
			queue := topic + "_node"
			cleanupAMQP(t, topic, queue)
			tr := openAMQP(t, w)
			reg := registry(t)
			node := startScript(t, "amqp_consume.js",
				"AMQP_URL="+testenv.AMQPURL(), "EXCHANGE="+topic, "QUEUE="+queue, "COUNT=1000")
			node.until(t, "ready", time.Minute)

			pub := publishAll(t, tr.Publisher(), reg, topic, n, 0, 0)
			got := consumed(t, node, n)
			for i := range pub {
				checkAMQPDelivery(t, w, pub[i], got[i])
			}
		})
	}
}

// checkAMQPDelivery compares what amqplib got with what eventkit published.
func checkAMQPDelivery(t *testing.T, w events.Wire, p handled, g nodeLine) {
	t.Helper()
	env := p.env
	msg := func(what string) string { return what + " of event " + env.ID + " (" + g.Raw + ")" }
	// The standard properties, in every form.
	require.Equal(t, env.ID, g.Props.MessageID, msg("message-id"))
	require.Equal(t, env.Name, g.Props.Type, msg("type"))
	require.Equal(t, env.CorrelationID, g.Props.CorrelationID, msg("correlation-id"))
	require.Equal(t, env.Source, g.Props.AppID, msg("app-id"))
	require.NotNil(t, g.Props.Timestamp, msg("timestamp"))
	require.Equal(t, env.OccurredAt.Unix(), *g.Props.Timestamp, msg("timestamp"))
	require.Equal(t, 2, g.Props.DeliveryMode, msg("delivery mode (persistent)"))

	switch w {
	case events.WireEventkit:
		require.Empty(t, g.Mode, msg("no CloudEvent"))
		require.Equal(t, "application/json", g.Props.ContentType, msg("content-type"))
		want := map[string]string{
			events.KeyName:          env.Name,
			events.KeyEventID:       env.ID,
			events.KeyVersion:       "2",
			events.KeyOccurredAt:    env.OccurredAt.Format(time.RFC3339Nano),
			events.KeyCorrelationID: env.CorrelationID,
			events.KeyCausationID:   env.CausationID,
			events.KeySource:        env.Source,
			events.KeyPartitionKey:  env.PartitionKey,
			events.KeyContentType:   "application/json",
		}
		for k, v := range want {
			require.Equal(t, v, g.Headers[k], msg("header "+k))
		}
		var e OrderPlaced
		require.NoError(t, json.Unmarshal([]byte(g.Body), &e), msg("body"))
		require.Equal(t, p.event, e, msg("body"))
	case events.WireCloudEvents:
		require.Equal(t, "binary", g.Mode, msg("CloudEvents mode"))
		require.Equal(t, "application/json", g.Props.ContentType, msg("content-type"))
		require.Equal(t, env.OccurredAt.Format(time.RFC3339Nano), g.Headers["cloudEvents:time"], msg("cloudEvents:time"))
		checkCloudEvent(t, p, g.Event, time.Nanosecond, msg)
	case events.WireCloudEventsStructured:
		require.Equal(t, "structured", g.Mode, msg("CloudEvents mode"))
		require.Equal(t, events.ContentTypeCloudEvents, g.Props.ContentType, msg("content-type"))
		checkCloudEvent(t, p, g.Event, time.Millisecond, msg) // the SDK keeps milliseconds
	}
}

// checkCloudEvent compares the CloudEvent the JS SDK read with what eventkit
// published. precision is the time's as the SDK holds it.
func checkCloudEvent(t *testing.T, p handled, ce *ceAttrs, precision time.Duration, msg func(string) string) {
	t.Helper()
	env := p.env
	require.NotNil(t, ce, msg("CloudEvent"))
	require.Equal(t, events.CloudEventsSpecVersion, ce.SpecVersion, msg("specversion"))
	require.Equal(t, env.ID, ce.ID, msg("id"))
	require.Equal(t, env.Name, ce.Type, msg("type"))
	require.Equal(t, env.Source, ce.Source, msg("source"))
	at, err := time.Parse(time.RFC3339Nano, ce.Time)
	require.NoError(t, err, msg("time"))
	require.Equal(t, env.OccurredAt.Truncate(precision), at.UTC(), msg("time"))
	require.Equal(t, "application/json", ce.DataContentType, msg("datacontenttype"))
	require.Equal(t, env.CorrelationID, ce.CorrelationID, msg("correlationid"))
	require.Equal(t, env.CausationID, ce.CausationID, msg("causationid"))
	require.Equal(t, "2", ce.EventVersion, msg("eventversion"))
	require.Equal(t, env.PartitionKey, ce.PartitionKey, msg("partitionkey"))
	require.Equal(t, p.event, dataOf(t, ce.Data), msg("data"))
}
