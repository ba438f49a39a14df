package node

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
	"github.com/b2131a45/eventkit/transports/amqp"
)

// badCases are the malformed messages the producer scripts make (see their
// headers), in the order they are sent, and the dead-letter reason of each.
var badCases = []struct {
	name   string
	reason middleware.Reason
}{
	{"no_name", middleware.ReasonMissingName},            // AMQP: no type property; Kafka: ce_ headers without ce_type
	{"no_id", middleware.ReasonMissingID},                // AMQP: no message-id; Kafka: eventkit headers without event_id
	{"version_two", middleware.ReasonUnsupportedVersion}, // binary CloudEvent, eventversion "two"
	{"version_99", middleware.ReasonUnsupportedVersion},  // structured CloudEvent, eventversion 99
	{"garbage", middleware.ReasonDecode},                 // AMQP: properties, Kafka: eventkit headers; a payload that is not JSON
	{"not_json", middleware.ReasonDecode},                // application/cloudevents+json that is not JSON, and nothing else
	{"unknown", middleware.ReasonUnknownEvent},           // binary CloudEvent of an unregistered type
}

// malformedPlan is rounds rounds of every bad case, each followed by three
// good events in the forms given: a bad message first, good ones behind
// every bad one. It returns the CASES variable and the number of good and
// bad messages.
func malformedPlan(rounds int, forms ...string) (env string, good, bad int) {
	var cs []string
	for range rounds {
		for _, b := range badCases {
			cs = append(cs, b.name)
			bad++
			for range 3 {
				cs = append(cs, forms[good%len(forms)])
				good++
			}
		}
	}
	return "CASES=" + strings.Join(cs, ","), good, bad
}

// TestMalformedFromNode: amqplib and kafkajs send malformed messages (no
// name, no id, a version "two" and 99, a payload that does not decode, a
// structured CloudEvent that is not JSON, an unknown event) among good
// ones, and eventkit dead-letters each once on <topic>.dlq with its reason
// and handles every good one, none blocked behind a bad one — under
// middleware.Default and with the minimal wiring (the processor's
// DeadLetter).
func TestMalformedFromNode(t *testing.T) {
	t.Parallel()
	nodeBin(t)
	const rounds = 3
	for _, w := range []wiring{withDefault, minimal} {
		t.Run("amqp/"+string(w), func(t *testing.T) {
			t.Parallel()
			const handler = "interop-consumer"
			topic := testenv.Name(t, "bad")
			cleanupAMQP(t, topic, amqp.QueueName(topic, handler))
			tr := openAMQP(t, "")
			initGroup(t, tr, topic, handler)
			c := consume(t, tr, registry(t), topic, handler, w)

			plan, good, bad := malformedPlan(rounds, "properties", "binary", "structured")
			sent := produce(t, "amqp_produce.js", good+bad,
				"AMQP_URL="+testenv.AMQPURL(), "EXCHANGE="+topic, "EVENT_TYPE="+eventName, plan)
			got := c.waitFor(t, good, time.Minute)
			var want []string
			for _, s := range sent {
				if !isBad(s.Case) {
					want = append(want, s.Event.ID)
				}
			}
			ids := make([]string, len(got))
			for i, h := range got {
				ids[i] = h.env.ID
			}
			require.Equal(t, want, ids, "every good event, in the order sent")
			checkDeadLetters(t, tr, c, topic, handler, rounds)
			require.Zero(t, queueDepth(t, amqp.QueueName(topic, handler)), "nothing left in the queue")
		})
		t.Run("kafka/"+string(w), func(t *testing.T) {
			t.Parallel()
			const handler = "interop-consumer"
			brokers := kafkaCluster(t, 4)
			topic := testenv.Name(t, "bad")
			tr := openKafka(t, brokers, "")
			c := consume(t, tr, registry(t), topic, handler, w)

			plan, good, bad := malformedPlan(rounds, "plain", "binary", "structured")
			sent := produce(t, "kafka_produce.js", good+bad,
				"KAFKA_BROKERS="+brokers, "TOPIC="+topic, "EVENT_TYPE="+eventName, plan)
			got := c.waitFor(t, good, time.Minute)
			var want, ids []string
			for _, s := range sent {
				if !isBad(s.Case) {
					want = append(want, s.Event.ID)
				}
			}
			for _, h := range got {
				ids = append(ids, h.env.ID)
			}
			sort.Strings(want)
			sort.Strings(ids)
			require.Equal(t, want, ids, "every good event once")
			checkDeadLetters(t, tr, c, topic, handler, rounds)
		})
	}
}

func isBad(c string) bool {
	for _, b := range badCases {
		if b.name == c {
			return true
		}
	}
	return false
}

// checkDeadLetters reads <topic>.dlq and requires rounds dead letters of
// each bad case there, each with its reason, and no other dead letter.
func checkDeadLetters(t *testing.T, tr *transports.Transport, c *consumer, topic, handler string, rounds int) {
	t.Helper()
	n := rounds * len(badCases)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dls, err := middleware.ListDLQ(ctx, tr.Subscriber, tr.Publisher(), middleware.ReplayConfig{
		Topic:       middleware.DeadLetterTopic(topic),
		Limit:       n,
		IdleTimeout: 30 * time.Second, // bounds a scan that finds fewer; with n it ends at the n-th
		Logger:      discard,
	})
	require.NoError(t, err)
	require.Len(t, dls, n, "dead letters")
	perCase := map[string]int{}
	for _, dl := range dls { // every dead letter checked, so that a failure lists them all
		name := dl.Message.Metadata.Get("interop_case")
		if !assert.True(t, isBad(name), "dead letter of a good event: %v", dl.Message.Metadata) {
			continue
		}
		perCase[name]++
		for _, b := range badCases {
			if b.name == name {
				assert.Equal(t, b.reason, dl.Reason, "dead letter of %s: %s", name, dl.Error)
			}
		}
		assert.Equal(t, topic, dl.OriginalTopic, name)
		assert.Equal(t, handler, dl.Handler, name)
		assert.Equal(t, 1, dl.Attempts, "%s: a permanent error is not retried", name)
	}
	for _, b := range badCases {
		assert.Equal(t, rounds, perCase[b.name], "dead letters of %s", b.name)
	}
	require.EqualValues(t, n, c.deadLettered(), "each bad message dead-lettered once")
}
