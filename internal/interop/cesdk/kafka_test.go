package cesdk_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	kafka_sarama "github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/kafkatest"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports"
)

// sdkSaramaConfig is the Sarama configuration of the SDK's side: a protocol
// version kfake serves consumer groups for, and new groups reading from the
// start, as eventkit's do.
func sdkSaramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V2_8_0_0
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	return c
}

// Events the SDK's kafka_sarama sender writes reach an eventkit processor
// with every envelope field, in both content modes: ce_ headers and
// content-type (binary), or an application/cloudevents+json value
// (structured); the partition key is also the record key.
func TestKafkaSDKToEventkit(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name       string
		structured bool
	}{{"binary", false}, {"structured", true}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			brokers := kafkatest.Cluster(t).ListenAddrs()
			topic := testenv.Name(t, "cesdk")

			sender, err := kafka_sarama.NewSender(brokers, sdkSaramaConfig(), topic)
			require.NoError(t, err)
			defer func() { require.NoError(t, sender.Close(context.Background())) }()
			want := sendWithSDK(t, sender, mode.structured, nil)
			checkKafkaRecord(t, brokers, topic, mode.structured)

			tr, err := transports.Open(context.Background(), "kafka://"+strings.Join(brokers, ","))
			require.NoError(t, err)
			defer func() { require.NoError(t, tr.Close()) }()
			col := newCollector(total)
			stop := consumeWithEventkit(t, tr, newRegistry(t), topic, testenv.Name(t, "inventory"), col)
			got, invalid := col.wait(t, deliveryTimeout)
			stop()
			requireAll(t, want, got, invalid)
		})
	}
}

// Events eventkit's Bus publishes with ?wire=cloudevents or
// ?wire=cloudevents-structured reach the SDK's kafka_sarama receiver (a
// Sarama consumer group) as valid CloudEvents with every attribute and
// extension, and their data decodes into the Go type.
func TestKafkaEventkitToSDK(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		wire events.Wire
		enc  binding.Encoding
	}{{events.WireCloudEvents, binding.EncodingBinary}, {events.WireCloudEventsStructured, binding.EncodingStructured}} {
		t.Run(string(mode.wire), func(t *testing.T) {
			t.Parallel()
			brokers := kafkatest.Cluster(t).ListenAddrs()
			topic := testenv.Name(t, "cesdk")

			tr, err := transports.Open(context.Background(), withQuery("kafka://"+strings.Join(brokers, ","), "wire="+string(mode.wire)))
			require.NoError(t, err)
			defer func() { require.NoError(t, tr.Close()) }()
			want := publishWithBus(t, tr, newRegistry(t), topic)

			consumer, err := kafka_sarama.NewConsumer(brokers, sdkSaramaConfig(), testenv.Name(t, "sdk"), topic)
			require.NoError(t, err)
			defer func() { require.NoError(t, consumer.Close(context.Background())) }()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			inbound := make(chan error, 1)
			go func() { inbound <- consumer.OpenInbound(ctx) }()
			col := newCollector(total)
			received := make(chan error, 1)
			go func() { received <- receiveWithSDK(ctx, consumer, col, mode.enc, describeKafka) }()
			got, invalid := col.wait(t, deliveryTimeout)
			cancel()
			require.NoError(t, <-received)
			require.NoError(t, <-inbound)
			requireAll(t, want, got, invalid)
		})
	}
}

// checkKafkaRecord reads the first record of topic with franz-go and checks
// that the SDK wrote it in the content mode asked for: ce_ headers, the data
// as value and the partition key as record key (binary), or the whole event
// as an application/cloudevents+json value (structured).
func checkKafkaRecord(t *testing.T, brokers []string, topic string, structured bool) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deliveryTimeout)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) == 0 {
		fetches := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "no record on %s", topic)
		recs = fetches.Records()
	}
	r := recs[0]
	headers := map[string]string{}
	for _, h := range r.Headers {
		headers[h.Key] = string(h.Value)
	}
	t.Logf("a record the SDK wrote: key %q, headers %v, value %s", r.Key, headers, r.Value)
	if structured {
		assert.Equal(t, events.ContentTypeCloudEvents, headers["content-type"])
		assert.NotContains(t, headers, "ce_specversion")
		assert.Contains(t, string(r.Value), `"specversion":"1.0"`)
		return
	}
	assert.Equal(t, jsonType, headers["content-type"])
	assert.Equal(t, events.CloudEventsSpecVersion, headers["ce_specversion"])
	assert.Equal(t, headers["ce_partitionkey"], string(r.Key))
	assert.NotContains(t, string(r.Value), `"specversion"`)
}

// describeKafka shows a record the SDK could not read: its headers and value.
func describeKafka(m binding.Message) string {
	km, ok := m.(*kafka_sarama.Message)
	if !ok {
		if w, isWrapper := m.(binding.MessageWrapper); isWrapper {
			km, ok = w.GetWrappedMessage().(*kafka_sarama.Message)
		}
	}
	if !ok {
		return fmt.Sprintf("a %T", m)
	}
	hs := make([]string, 0, len(km.Headers))
	for k, v := range km.Headers {
		hs = append(hs, k+"="+string(v))
	}
	sort.Strings(hs)
	return fmt.Sprintf("headers %v, value %q", hs, km.Value)
}
