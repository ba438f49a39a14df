package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports/kafka"
	"github.com/b2131a45/eventkit/transports/transporttest"
)

// rawReader reads a topic with franz-go's client, from the start of every
// partition.
func rawReader(brokers []string) func(t *testing.T, topic string) func() transporttest.Record {
	return func(t *testing.T, topic string) func() transporttest.Record {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AllowAutoTopicCreation())
		require.NoError(t, err)
		t.Cleanup(cl.Close)
		var buffered []*kgo.Record
		return func() transporttest.Record {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for len(buffered) == 0 {
				fetches := cl.PollFetches(ctx)
				if ctx.Err() != nil {
					t.Fatalf("no record on %s within 30s", topic)
				}
				buffered = append(buffered, fetches.Records()...)
			}
			r := buffered[0]
			buffered = buffered[1:]
			return record(r)
		}
	}
}

func record(r *kgo.Record) transporttest.Record {
	rec := transporttest.Record{Headers: map[string]string{}, Properties: map[string]string{}, Body: r.Value}
	for _, h := range r.Headers {
		rec.Headers[h.Key] = string(h.Value)
	}
	if r.Key != nil {
		rec.Properties["key"] = string(r.Key)
	}
	rec.Properties["timestamp"] = r.Timestamp.UTC().Format(time.RFC3339Nano)
	return rec
}

// TestWire checks what each wire form lays on Kafka, read with franz-go, and
// that subscribers read it back.
func TestWire(t *testing.T) {
	t.Parallel()
	cfg, cluster := config(t)
	transporttest.RunWire(t, transporttest.WireConfig{
		Open: func(t *testing.T, w events.Wire) transporttest.Transport {
			c := cfg
			c.Wire = w
			return newTransport(t, c)
		},
		Reader: rawReader(cluster.ListenAddrs()),
		Binding: transporttest.Binding{
			AttributePrefix: kafka.CloudEventsHeaderPrefix,
			ContentType:     "header:" + kafka.ContentTypeHeader,
			Properties: map[string]string{
				events.KeyPartitionKey: "key",
				events.KeyOccurredAt:   "timestamp",
			},
		},
		Features: transporttest.Features{NewGroupsSeeHistory: true},
	})
}

// sampleKeys are the keys of the partitioning checks.
var sampleKeys = []string{"order-1", "order-2", "order-3", "customer-42", "a", "SKU-1", "f47ac10b-58cc-4372-a567-0e02b2c3d479"}

// TestPartitionsLikeOtherClients: with the default partitioner, eventkit
// puts each key on the partition franz-go's default partitioner (the Java
// client's murmur2, as kafkajs and librdkafka's murmur2_random) puts it on,
// and the record key comes back as the partition key of a record with no
// partition_key header; with PartitionerFNV1a it keeps Sarama's old
// placement.
func TestPartitionsLikeOtherClients(t *testing.T) {
	t.Parallel()
	cfg, cluster := config(t, kfake.DefaultNumPartitions(7))
	topic := testenv.Name(t, "parts")
	tr := newTransport(t, cfg)

	foreign, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.AllowAutoTopicCreation())
	require.NoError(t, err)
	defer foreign.Close()
	ctx := context.Background()
	partOf := map[string]int32{}
	for _, key := range sampleKeys {
		r, err := foreign.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(`{}`)}).First()
		require.NoError(t, err)
		partOf[key] = r.Partition
	}
	for _, key := range sampleKeys {
		msg := message.NewMessage(key, []byte(`{}`))
		msg.Metadata.Set(events.KeyPartitionKey, key)
		require.NoError(t, tr.Publisher().Publish(topic, msg))
	}

	sub, err := tr.Subscriber("g")
	require.NoError(t, err)
	msgs, err := sub.Subscribe(ctx, topic)
	require.NoError(t, err)
	seen := map[string][]int32{}
	for range 2 * len(sampleKeys) {
		select {
		case m := <-msgs:
			m.Ack()
			p, _ := kafka.MessagePartitionFromCtx(m.Context())
			key := m.Metadata.Get(events.KeyPartitionKey)
			require.NotEmpty(t, key, "the record key fills partition_key")
			seen[key] = append(seen[key], p)
		case <-time.After(30 * time.Second):
			t.Fatalf("received %d records", len(seen))
		}
	}
	moved := 0
	for _, key := range sampleKeys {
		require.Equal(t, []int32{partOf[key], partOf[key]}, seen[key], "key %q: franz-go's partition, then eventkit's", key)
		fnv, err := sarama.NewHashPartitioner(topic).Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, 7)
		require.NoError(t, err)
		if fnv != partOf[key] {
			moved++
		}
	}
	t.Logf("%d of %d sample keys would be on another partition with Sarama's FNV-1a hash", moved, len(sampleKeys))

	old := cfg
	old.Partitioner = kafka.PartitionerFNV1a
	oldTr := newTransport(t, old)
	oldTopic := topic + ".fnv"
	for _, key := range sampleKeys {
		msg := message.NewMessage(key, nil)
		msg.Metadata.Set(events.KeyPartitionKey, key)
		require.NoError(t, oldTr.Publisher().Publish(oldTopic, msg))
	}
	oldSub, err := oldTr.Subscriber("g")
	require.NoError(t, err)
	oldMsgs, err := oldSub.Subscribe(ctx, oldTopic)
	require.NoError(t, err)
	for range sampleKeys {
		m := <-oldMsgs
		m.Ack()
		p, _ := kafka.MessagePartitionFromCtx(m.Context())
		want, _ := sarama.NewHashPartitioner(oldTopic).Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(m.UUID)}, 7)
		require.Equal(t, want, p, "fnv1a keeps Sarama's placement of %q", m.UUID)
	}
}

func TestParseURLWireAndPartitioner(t *testing.T) {
	t.Parallel()
	cfg, err := kafka.ParseURL("kafka://localhost:9092?wire=cloudevents-structured&partitioner=fnv1a")
	require.NoError(t, err)
	require.Equal(t, events.WireCloudEventsStructured, cfg.Wire)
	require.Equal(t, kafka.PartitionerFNV1a, cfg.Partitioner)
	_, err = kafka.ParseURL("kafka://localhost:9092?partitioner=crc")
	require.ErrorContains(t, err, "partitioner")
	_, err = kafka.NewPublisher(kafka.Config{Brokers: []string{"localhost:1"}, Wire: "xml"})
	require.ErrorContains(t, err, "Config.Wire")
}
