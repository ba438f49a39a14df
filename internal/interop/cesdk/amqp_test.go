package cesdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	ceamqp "github.com/cloudevents/sdk-go/protocol/amqp/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
	ekamqp "github.com/b2131a45/eventkit/transports/amqp"
)

// RabbitMQ 3.x's AMQP 1.0 plugin (rabbitmq_amqp1_0, on the AMQP port) takes
// these addresses, which the tests use:
//
//	/exchange/<exchange>/<routing-key>  send to an exchange. The routing key
//	                                    must not be empty: 3.10 crashes the
//	                                    0-9-1 delivery of a message sent with
//	                                    none; any key does for eventkit's
//	                                    fanout exchanges.
//	/amq/queue/<queue>                  receive from an existing queue.
//
// What crosses the protocol boundary on RabbitMQ before 3.13:
//
//   - AMQP 1.0 → 0-9-1: the message's properties and application properties
//     arrive encoded, as AMQP 1.0 sections, in the x-amqp-1.0-properties and
//     x-amqp-1.0-app-properties headers, the data section as the body.
//     eventkit decodes them, so the SDK's binary mode (attributes as
//     "cloudEvents:" application properties) and structured mode both work.
//   - 0-9-1 → AMQP 1.0: the body becomes a data section and the standard
//     properties (content-type…) AMQP 1.0 properties, but the headers are
//     not mapped to application properties. A message eventkit writes in
//     binary mode (?wire=cloudevents, attributes in "cloudEvents:" headers)
//     therefore reaches an AMQP 1.0 receiver as bare JSON data without any
//     CloudEvents attribute: eventkit → AMQP 1.0 CloudEvents receivers needs
//     ?wire=cloudevents-structured there. From RabbitMQ 3.13 on, headers are
//     mapped to application properties and binary mode should work too;
//     TestAMQPEventkitToSDK/cloudevents asserts whichever applies to the
//     broker it runs against (the broker's server-properties version).
const (
	sendRoutingKey = "x"
	// amqp10Credit is the link credit of the SDK's receivers (go-amqp's
	// default is 1, a round trip per message).
	amqp10Credit = 100
)

// rabbit is a test's view of the RabbitMQ node: an AMQP 0-9-1 connection for
// declaring and deleting, the broker's version, and how the SDK reaches its
// AMQP 1.0 listener.
type rabbit struct {
	url  string // eventkit's amqp:// URL
	conn *amqp091.Connection
	// version is the broker's server-properties "version", e.g. "3.10.8";
	// major and minor are 0 when it does not parse.
	version      string
	major, minor int
	// addr and connOpts dial the AMQP 1.0 listener with go-amqp.
	addr     string
	connOpts []goamqp.ConnOption
}

// newRabbit connects to RabbitMQ, over AMQP 0-9-1 and, to check that the
// AMQP 1.0 plugin answers, over AMQP 1.0. Either missing skips the test
// (fails it under CI).
func newRabbit(t *testing.T) *rabbit {
	t.Helper()
	r := &rabbit{url: testenv.AMQPURL()}
	conn, err := amqp091.DialConfig(r.url, amqp091.Config{Dial: amqp091.DefaultDial(10 * time.Second)})
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	r.conn = conn
	r.version, _ = conn.Properties["version"].(string)
	r.major, r.minor = parseVersion(r.version)

	uri, err := amqp091.ParseURI(r.url)
	require.NoError(t, err)
	r.addr = uri.Scheme + "://" + net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port))
	r.connOpts = []goamqp.ConnOption{
		goamqp.ConnSASLPlain(uri.Username, uri.Password),
		goamqp.ConnConnectTimeout(10 * time.Second),
	}
	if uri.Vhost != "" && uri.Vhost != "/" {
		// RabbitMQ 3.x reads an AMQP 1.0 client's vhost from its hostname.
		r.connOpts = append(r.connOpts, goamqp.ConnServerHostname("vhost:"+uri.Vhost))
	}
	probe, err := goamqp.Dial(r.addr, r.connOpts...)
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ's AMQP 1.0 listener (rabbitmq-plugins enable rabbitmq_amqp1_0)", err)
	}
	require.NoError(t, probe.Close())
	return r
}

func parseVersion(v string) (major, minor int) {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return 0, 0
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return 0, 0
	}
	return major, minor
}

// mapsHeadersToAMQP10 reports whether the broker hands AMQP 0-9-1 headers to
// AMQP 1.0 consumers as application properties (RabbitMQ ≥ 3.13), and
// whether its version told.
func (r *rabbit) mapsHeadersToAMQP10() (maps, known bool) {
	if r.major == 0 {
		return false, false
	}
	return r.major > 3 || (r.major == 3 && r.minor >= 13), true
}

// deleteAfter deletes the queues and exchanges when the test ends, after
// everything registered later (transports, clients) has closed, and checks
// that they are gone.
func (r *rabbit) deleteAfter(t *testing.T, queues, exchanges []string) {
	t.Helper()
	t.Cleanup(func() {
		on := func(f func(ch *amqp091.Channel) error) error {
			ch, err := r.conn.Channel()
			if err != nil {
				return err
			}
			defer func() { _ = ch.Close() }() // closed already after an error
			return f(ch)
		}
		for _, q := range queues {
			if err := on(func(ch *amqp091.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err }); err != nil && !notFound(err) {
				t.Errorf("delete queue %s: %v", q, err)
			}
			err := on(func(ch *amqp091.Channel) error {
				_, err := ch.QueueDeclarePassive(q, false, false, false, false, nil)
				return err
			})
			assert.True(t, notFound(err), "queue %s is still there after the test: %v", q, err)
		}
		for _, x := range exchanges {
			if err := on(func(ch *amqp091.Channel) error { return ch.ExchangeDelete(x, false, false) }); err != nil && !notFound(err) {
				t.Errorf("delete exchange %s: %v", x, err)
			}
			err := on(func(ch *amqp091.Channel) error {
				return ch.ExchangeDeclarePassive(x, "fanout", true, false, false, false, nil)
			})
			assert.True(t, notFound(err), "exchange %s is still there after the test: %v", x, err)
		}
	})
}

func notFound(err error) bool {
	var e *amqp091.Error
	return errors.As(err, &e) && e.Code == amqp091.NotFound
}

// declareGroup declares topic's exchange and group's queue as an eventkit
// subscriber does before it consumes.
func declareGroup(t *testing.T, tr *transports.Transport, topic, group string) {
	t.Helper()
	sub, err := tr.Subscriber(group)
	require.NoError(t, err)
	defer func() { require.NoError(t, sub.Close()) }()
	require.NoError(t, sub.(message.SubscribeInitializer).SubscribeInitialize(topic))
}

// peekQueue declares a queue of its own on topic's exchange, for peekAt.
func (r *rabbit) peekQueue(t *testing.T, topic, queue string) {
	t.Helper()
	ch, err := r.conn.Channel()
	require.NoError(t, err)
	defer func() { _ = ch.Close() }()
	_, err = ch.QueueDeclare(queue, false, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(queue, "", topic, false, nil))
}

// peekAt reads the first message of queue as an AMQP 0-9-1 consumer sees
// it (what RabbitMQ made of what the SDK sent), without acking it.
func (r *rabbit) peekAt(t *testing.T, queue string) amqp091.Delivery {
	t.Helper()
	ch, err := r.conn.Channel()
	require.NoError(t, err)
	defer func() { _ = ch.Close() }()
	require.NoError(t, ch.Qos(1, 0, false))
	ds, err := ch.Consume(queue, "", false, true, false, false, nil)
	require.NoError(t, err)
	select {
	case d := <-ds:
		return d
	case <-time.After(deliveryTimeout):
		t.Fatalf("no message on %s within %s", queue, deliveryTimeout)
		return amqp091.Delivery{}
	}
}

// Events the SDK's AMQP 1.0 sender writes to eventkit's exchange reach an
// eventkit processor, consuming over AMQP 0-9-1, with every envelope field,
// in both content modes.
func TestAMQPSDKToEventkit(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name       string
		structured bool
	}{{"binary", false}, {"structured", true}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			rb := newRabbit(t)
			topic := testenv.Name(t, "cesdk")
			handler := testenv.Name(t, "inventory")
			peek := topic + "_peek"
			dlq := middleware.DeadLetterTopic(topic)
			rb.deleteAfter(t,
				[]string{ekamqp.QueueName(topic, handler), ekamqp.QueueName(dlq, middleware.DeadLetterGroupDefault), peek},
				[]string{topic, dlq})

			tr, err := transports.Open(context.Background(), rb.url)
			require.NoError(t, err)
			defer func() { require.NoError(t, tr.Close()) }()
			declareGroup(t, tr, topic, handler)
			rb.peekQueue(t, topic, peek)

			sender, err := ceamqp.NewSenderProtocol(rb.addr, "/exchange/"+topic+"/"+sendRoutingKey, rb.connOpts, nil)
			require.NoError(t, err)
			defer func() { require.NoError(t, sender.Close(context.Background())) }()
			var adjust func(*record)
			if !mode.structured {
				// The AMQP binding writes time as an AMQP timestamp, which
				// has milliseconds: the SDK's own receivers get no more.
				adjust = func(r *record) {
					at, err := time.Parse(time.RFC3339Nano, r.Time)
					require.NoError(t, err)
					r.Time = formatTime(at.Truncate(time.Millisecond))
				}
			}
			want := sendWithSDK(t, sender, mode.structured, adjust)

			d := rb.peekAt(t, peek)
			t.Logf("an SDK event as RabbitMQ %s hands it to AMQP 0-9-1: %s", rb.version, describeDelivery(d))
			assert.Equal(t, mode.structured, strings.Contains(string(d.Body), `"specversion"`),
				"the body holds the whole event in structured mode, only the data in binary mode: %s", d.Body)

			col := newCollector(total)
			stop := consumeWithEventkit(t, tr, newRegistry(t), topic, handler, col)
			got, invalid := col.wait(t, deliveryTimeout)
			stop()
			requireAll(t, want, got, invalid)
		})
	}
}

// Events eventkit's Bus publishes with ?wire=cloudevents-structured reach the
// SDK's AMQP 1.0 receiver as valid CloudEvents with every attribute and
// extension. With ?wire=cloudevents (binary mode) they do on RabbitMQ ≥ 3.13
// only: before, the broker drops the "cloudEvents:" headers on the way to
// AMQP 1.0 (see the comment at the top of this file), which the binary
// subtest asserts on such a broker.
func TestAMQPEventkitToSDK(t *testing.T) {
	t.Parallel()
	t.Run("cloudevents-structured", func(t *testing.T) {
		t.Parallel()
		rb := newRabbit(t)
		want, got, invalid, _ := eventkitToSDK(t, rb, events.WireCloudEventsStructured, binding.EncodingStructured)
		requireAll(t, want, got, invalid)
	})
	t.Run("cloudevents", func(t *testing.T) {
		t.Parallel()
		rb := newRabbit(t)
		full, known := rb.mapsHeadersToAMQP10()
		if full || !known {
			want, got, invalid, _ := eventkitToSDK(t, rb, events.WireCloudEvents, binding.EncodingBinary)
			if !known {
				t.Skipf("RabbitMQ's version %q does not tell whether it maps headers to AMQP 1.0: not asserting; "+
					"%d valid events, %d invalid messages, first: %s", rb.version, len(got), len(invalid), first(invalid))
			}
			requireAll(t, want, got, invalid)
			return
		}
		// RabbitMQ < 3.13: what eventkit wrote as headers never reaches the
		// receiver. Each message arrives, as bare data with the standard
		// properties, and none is a CloudEvent.
		want, got, invalid, seen := eventkitToSDK(t, rb, events.WireCloudEvents, binding.EncodingUnknown)
		t.Logf("RabbitMQ %s hands eventkit's binary mode to an AMQP 1.0 receiver as: %s", rb.version, first(invalid))
		require.Empty(t, got, "RabbitMQ %s gave an AMQP 1.0 receiver CloudEvents attributes from 0-9-1 headers: "+
			"if it maps headers to application properties now, update mapsHeadersToAMQP10", rb.version)
		require.Len(t, seen, total)
		for _, m := range seen {
			w, ok := want[m.messageID]
			require.True(t, ok, "message-id %q is the id of an event eventkit sent", m.messageID)
			require.Equal(t, amqp10Seen{
				messageID: w.ID, encoding: binding.EncodingUnknown, contentType: jsonType, data: w.Data,
			}, m)
		}
	})
}

// amqp10Seen is what an AMQP 1.0 receiver got, as far as the test looks.
type amqp10Seen struct {
	messageID   string
	encoding    binding.Encoding
	contentType string
	// ceProperties are the application properties of CloudEvents
	// attributes ("cloudEvents:…").
	ceProperties []string
	data         OrderPlaced
}

// eventkitToSDK publishes total events with eventkit in wire form w to a
// queue and receives them with the SDK's AMQP 1.0 receiver, which must see
// them in content mode enc. It returns what was wanted, the valid events,
// the invalid messages described, and the invalid messages as seen.
func eventkitToSDK(t *testing.T, rb *rabbit, w events.Wire, enc binding.Encoding) (map[string]record, map[string][]record, []string, []amqp10Seen) {
	t.Helper()
	topic := testenv.Name(t, "cesdk")
	group := "sdk"
	queue := ekamqp.QueueName(topic, group)
	rb.deleteAfter(t, []string{queue}, []string{topic})

	tr, err := transports.Open(context.Background(), withQuery(rb.url, "wire="+string(w)))
	require.NoError(t, err)
	defer func() { require.NoError(t, tr.Close()) }()
	declareGroup(t, tr, topic, group)
	want := publishWithBus(t, tr, newRegistry(t), topic)

	receiver, err := ceamqp.NewReceiverProtocol(rb.addr, "/amq/queue/"+queue, rb.connOpts, nil,
		ceamqp.WithReceiverLinkOption(goamqp.LinkCredit(amqp10Credit)))
	require.NoError(t, err)
	defer func() { require.NoError(t, receiver.Close(context.Background())) }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu   sync.Mutex
		seen []amqp10Seen
	)
	describe := func(m binding.Message) string {
		s, desc := inspectAMQP10(m)
		mu.Lock()
		seen = append(seen, s)
		mu.Unlock()
		return desc
	}
	col := newCollector(total)
	received := make(chan error, 1)
	go func() { received <- receiveWithSDK(ctx, receiver, col, enc, describe) }()
	got, invalid := col.wait(t, deliveryTimeout)
	cancel()
	require.NoError(t, <-received)
	mu.Lock()
	defer mu.Unlock()
	return want, got, invalid, seen
}

// inspectAMQP10 reads an AMQP 1.0 message the SDK could not take as an
// event, and describes it.
func inspectAMQP10(m binding.Message) (amqp10Seen, string) {
	am, ok := m.(*ceamqp.Message)
	if !ok {
		return amqp10Seen{}, fmt.Sprintf("a %T", m)
	}
	s := amqp10Seen{encoding: am.ReadEncoding()}
	if p := am.AMQP.Properties; p != nil {
		s.messageID = fmt.Sprint(p.MessageID)
		if p.ContentType != nil {
			s.contentType = *p.ContentType
		}
	}
	for k := range am.AMQP.ApplicationProperties {
		if strings.HasPrefix(k, ekamqp.CloudEventsHeaderPrefix) {
			s.ceProperties = append(s.ceProperties, k)
		}
	}
	sort.Strings(s.ceProperties)
	_ = json.Unmarshal(am.AMQP.GetData(), &s.data)
	desc := fmt.Sprintf("content mode %s, message-id %q, content-type %q, application properties %v, message annotations %v, data %q",
		s.encoding, s.messageID, s.contentType, sortedKeys(am.AMQP.ApplicationProperties), am.AMQP.Annotations, am.AMQP.GetData())
	return s, desc
}

// describeDelivery shows an AMQP 0-9-1 delivery: properties, headers, body.
func describeDelivery(d amqp091.Delivery) string {
	hs := make([]string, 0, len(d.Headers))
	for k, v := range d.Headers {
		switch b := v.(type) {
		case []byte:
			v = fmt.Sprintf("%q", b)
		case string:
			v = fmt.Sprintf("%q", b)
		}
		hs = append(hs, fmt.Sprintf("%s=%v", k, v))
	}
	sort.Strings(hs)
	return fmt.Sprintf("content-type %q, message-id %q, type %q, headers %v, body %q", d.ContentType, d.MessageId, d.Type, hs, d.Body)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
