package node

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/kafkatest"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports"
)

// kafkaCluster starts an in-process Kafka cluster whose topics have
// partitions partitions, and returns its brokers' addresses.
func kafkaCluster(t *testing.T, partitions int) string {
	t.Helper()
	return strings.Join(kafkatest.Cluster(t, kfake.DefaultNumPartitions(partitions)).ListenAddrs(), ",")
}

// openKafka opens the Kafka transport with the wire form w.
func openKafka(t *testing.T, brokers string, w events.Wire) *transports.Transport {
	t.Helper()
	url := "kafka://" + brokers
	if w != "" {
		url += "?wire=" + string(w)
	}
	return open(t, "Kafka", url)
}

// checkKeyOrder requires that each key's events came in the order of their
// sequence numbers, want per key, all on one partition; it returns the
// partition of each key.
func checkKeyOrder(t *testing.T, got []handled, want int) map[string]int32 {
	t.Helper()
	seqs := map[string][]int{}
	parts := map[string]int32{}
	for _, h := range got {
		k := h.env.PartitionKey
		require.Equal(t, h.event.OrderID, k, "event %s: the partition key is the payload's key", h.env.ID)
		if p, seen := parts[k]; seen {
			require.Equal(t, p, h.partition, "key %s on two partitions (event %s)", k, h.env.ID)
		}
		parts[k] = h.partition
		seqs[k] = append(seqs[k], h.event.Seq)
	}
	for k, s := range seqs {
		require.Len(t, s, want, "events of key %s", k)
		for i, seq := range s {
			require.Equal(t, i, seq, "key %s: its events in order (%v)", k, s)
		}
	}
	return parts
}

// TestKafkaNodeToEventkit: kafkajs produces 1,000 keyed events in turn in
// these forms — eventkit's header names written by hand (a charset in the
// content type, occurred_at in epoch milliseconds), Kafka.binary and
// Kafka.structured CloudEvents from the JS SDK, and the SDK's HTTP binary
// mode relayed ("ce-" headers) — and eventkit (a typed handler,
// middleware.Default) handles each once with the envelope Node sent, each
// key's events in order on one partition.
func TestKafkaNodeToEventkit(t *testing.T) {
	t.Parallel()
	nodeBin(t)
	const n, keys, handler = 1000, 10, "interop-consumer"
	brokers := kafkaCluster(t, 4)
	topic := testenv.Name(t, "n2e")
	tr := openKafka(t, brokers, "")
	reg := registry(t)

	sent := produce(t, "kafka_produce.js", n,
		"KAFKA_BROKERS="+brokers, "TOPIC="+topic, "EVENT_TYPE="+eventName, "KEYS="+strconv.Itoa(keys),
		cases(n, "plain", "binary", "structured", "http_binary"))
	c := consume(t, tr, reg, topic, handler, withDefault)
	got := c.waitFor(t, n, time.Minute)

	byID := map[string]handled{}
	for _, h := range got {
		byID[h.env.ID] = h
	}
	require.Len(t, byID, n, "every event once")
	for i, s := range sent {
		h, ok := byID[s.Event.ID]
		require.True(t, ok, "event %d (%s) %s not handled", i, s.Case, s.Event.ID)
		require.Equal(t, wantEnvelope(t, s.Event), h.env, "event %d (%s): envelope", i, s.Case)
		require.Equal(t, dataOf(t, s.Event.Data), h.event, "event %d (%s): payload", i, s.Case)
	}
	checkKeyOrder(t, got, n/keys)
	require.Zero(t, c.chain.Duplicates())
	require.Zero(t, c.deadLettered())
}

// TestKafkaEventkitToNode: eventkit publishes 1,000 keyed events with
// cqrs.Bus in each wire form, and a kafkajs consumer reads them: the record
// key is the partition key, the record timestamp the occurred_at, the
// partition the one kafkajs's default partitioner picks for the key;
// eventkit's headers in its form, and CloudEvents read and validated by the
// JS SDK (Kafka.toEvent) in the CloudEvents forms, equal field by field to
// what was published, each key's events in order.
func TestKafkaEventkitToNode(t *testing.T) {
	t.Parallel()
	nodeBin(t)
	const n, keys = 1000, 10
	brokers := kafkaCluster(t, 4)
	for _, w := range []events.Wire{events.WireEventkit, events.WireCloudEvents, events.WireCloudEventsStructured} {
		t.Run(string(w), func(t *testing.T) {
			t.Parallel()
			topic := testenv.Name(t, "e2n")
			tr := openKafka(t, brokers, w)
			reg := registry(t)
			pub := publishAll(t, tr.Publisher(), reg, topic, n, keys, 0)

			node := startScript(t, "kafka_consume.js",
				"KAFKA_BROKERS="+brokers, "TOPIC="+topic, "GROUP=node-"+topic, "COUNT="+strconv.Itoa(n))
			got := consumed(t, node, n)

			byID := map[string]handled{}
			for _, p := range pub {
				byID[p.env.ID] = p
			}
			seen := map[string]bool{}
			order := make([]handled, 0, n)
			for _, g := range got {
				id := g.Headers[events.KeyEventID]
				if g.Event != nil {
					id = g.Event.ID
				}
				p, ok := byID[id]
				require.True(t, ok, "Node read an event eventkit did not publish: %s", g.Raw)
				require.False(t, seen[id], "Node read %s twice", id)
				seen[id] = true
				checkKafkaRecord(t, w, p, g)
				p.partition = *g.Partition
				order = append(order, p)
			}
			checkKeyOrder(t, order, n/keys)
		})
	}
}

// checkKafkaRecord compares what kafkajs got with what eventkit published.
func checkKafkaRecord(t *testing.T, w events.Wire, p handled, g nodeLine) {
	t.Helper()
	env := p.env
	msg := func(what string) string { return what + " of event " + env.ID + " (" + g.Raw + ")" }
	require.NotNil(t, g.Key, msg("key"))
	require.Equal(t, env.PartitionKey, *g.Key, msg("key"))
	require.Equal(t, strconv.FormatInt(env.OccurredAt.UnixMilli(), 10), g.Timestamp, msg("timestamp"))
	require.NotNil(t, g.Partition, msg("partition"))
	require.NotNil(t, g.ExpectedPartition, msg("partition"))
	require.Equal(t, *g.ExpectedPartition, *g.Partition, msg("partition (kafkajs's DefaultPartitioner's)"))
	require.Equal(t, env.ID, g.Headers["_watermill_message_uuid"], msg("UUID header"))

	switch w {
	case events.WireEventkit:
		require.Empty(t, g.Mode, msg("no CloudEvent"))
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
		require.NoError(t, json.Unmarshal([]byte(g.Body), &e), msg("value"))
		require.Equal(t, p.event, e, msg("value"))
	case events.WireCloudEvents:
		require.Equal(t, "binary", g.Mode, msg("CloudEvents mode"))
		require.Equal(t, "application/json", g.Headers["content-type"], msg("content-type header"))
		require.Equal(t, env.OccurredAt.Format(time.RFC3339Nano), g.Headers["ce_time"], msg("ce_time"))
		checkCloudEvent(t, p, g.Event, time.Millisecond, msg) // Kafka.toEvent keeps milliseconds
	case events.WireCloudEventsStructured:
		require.Equal(t, "structured", g.Mode, msg("CloudEvents mode"))
		require.Equal(t, events.ContentTypeCloudEvents, g.Headers["content-type"], msg("content-type header"))
		checkCloudEvent(t, p, g.Event, time.Millisecond, msg)
	}
}

// TestKafkaMixedProducersKeyOrder: kafkajs (its default partitioner) and
// eventkit publish to one topic of 6 partitions with the same 20 keys —
// Node each key's first 25 events, then eventkit its next 25 — and the
// eventkit consumer sees each key's 50 events in order, on one partition:
// both put a key on the same partition.
func TestKafkaMixedProducersKeyOrder(t *testing.T) {
	t.Parallel()
	nodeBin(t)
	const keys, perKey, handler = 20, 50, "interop-consumer"
	const half = keys * perKey / 2
	brokers := kafkaCluster(t, 6)
	topic := testenv.Name(t, "mixed")
	tr := openKafka(t, brokers, "")
	reg := registry(t)

	sent := produce(t, "kafka_produce.js", half,
		"KAFKA_BROKERS="+brokers, "TOPIC="+topic, "EVENT_TYPE="+eventName, "KEYS="+strconv.Itoa(keys),
		cases(half, "binary", "structured", "plain"))
	pub := publishAll(t, tr.Publisher(), reg, topic, half, keys, perKey/2)
	c := consume(t, tr, reg, topic, handler, withDefault)
	got := c.waitFor(t, keys*perKey, time.Minute)

	parts := checkKeyOrder(t, got, perKey)
	used := map[int32]bool{}
	for _, p := range parts {
		used[p] = true
	}
	require.Greater(t, len(used), 1, "the keys spread over partitions")
	sources := map[string]int{}
	for _, h := range got {
		sources[h.env.Source]++
	}
	require.Equal(t, map[string]int{"node-orders": len(sent), "eventkit-go": len(pub)}, sources)
}
