package amqp_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports/amqp"
)

const benchBatch = 100

// benchTopic declares a topic with one bounded queue, so that the broker
// routes, persists and confirms every message as in production.
func benchTopic(b *testing.B, ch *amqp091.Channel) string {
	topic := testenv.Name(b, "bench")
	queue := amqp.QueueName(topic, "bench")
	require.NoError(b, ch.ExchangeDeclare(topic, "fanout", true, false, false, false, nil))
	_, err := ch.QueueDeclare(queue, true, false, false, false, amqp091.Table{"x-max-length": int32(10_000)})
	require.NoError(b, err)
	require.NoError(b, ch.QueueBind(queue, "", topic, false, nil))
	b.Cleanup(func() {
		_, _ = ch.QueueDelete(queue, false, false, false)
		_ = ch.ExchangeDelete(topic, false, false)
	})
	return topic
}

// processCPU is this process's user and system CPU so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU per message since cpu0: the
// publisher's and its connection's goroutines, which wall time hides when
// the broker is the bound.
func reportCPU(b *testing.B, cpu0 time.Duration, msgs int) {
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/1e3/float64(msgs), "cpu-µs/msg")
}

func benchMessages(n int) []*message.Message {
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), []byte(`{"order_id":"7c0c5e0a","amount":1250}`))
		msgs[i].Metadata.Set("name", "orders.order_created")
		msgs[i].Metadata.Set("event_id", msgs[i].UUID)
	}
	return msgs
}

// BenchmarkPublishBatch publishes batches of 100 through the transport.
func BenchmarkPublishBatch(b *testing.B) {
	url := testenv.AMQPURL()
	ch := rawChannelB(b, url)
	topic := benchTopic(b, ch)
	pub, err := amqp.NewPublisher(context.Background(), amqp.Config{URL: url})
	require.NoError(b, err)
	defer pub.Close()
	msgs := benchMessages(benchBatch)

	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for b.Loop() {
		require.NoError(b, pub.Publish(topic, msgs...))
	}
	reportCPU(b, cpu0, b.N*benchBatch)
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "msg/s")
}

// BenchmarkRawPipelinedConfirms is the baseline: plain amqp091-go, the same
// batches published back to back on one confirm channel, then awaited.
func BenchmarkRawPipelinedConfirms(b *testing.B) {
	url := testenv.AMQPURL()
	ch := rawChannelB(b, url)
	topic := benchTopic(b, ch)
	require.NoError(b, ch.Confirm(false))
	msgs := benchMessages(benchBatch)
	ctx := context.Background()

	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for b.Loop() {
		confirms := make([]*amqp091.DeferredConfirmation, len(msgs))
		for i, m := range msgs {
			headers := amqp091.Table{"_watermill_message_uuid": m.UUID}
			for k, v := range m.Metadata {
				headers[k] = v
			}
			var err error
			confirms[i], err = ch.PublishWithDeferredConfirmWithContext(ctx, topic, "", false, false, amqp091.Publishing{
				Headers: headers, Body: m.Payload, DeliveryMode: amqp091.Persistent,
			})
			require.NoError(b, err)
		}
		for _, c := range confirms {
			ok, err := c.WaitContext(ctx)
			require.NoError(b, err)
			require.True(b, ok)
		}
	}
	reportCPU(b, cpu0, b.N*benchBatch)
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "msg/s")
}

func rawChannelB(b *testing.B, url string) *amqp091.Channel {
	conn, err := amqp091.Dial(url)
	if err != nil {
		testenv.Unavailable(b, "RabbitMQ", err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(b, err)
	return ch
}

// BenchmarkSubscribeAck consumes queued messages with 8 handed out at once
// and acks each, as a router does: per message, the delivery, the hand-out
// and the ack (coalesced by the subscriber's acker when settled together).
func BenchmarkSubscribeAck(b *testing.B) {
	url := testenv.AMQPURL()
	ch := rawChannelB(b, url)
	topic := testenv.Name(b, "bench")
	b.Cleanup(func() {
		_, _ = ch.QueueDelete(amqp.QueueName(topic, "bench"), false, false, false)
		_ = ch.ExchangeDelete(topic, false, false)
	})
	sub, err := amqp.NewSubscriber(context.Background(), amqp.Config{URL: url, Concurrency: 8, Prefetch: 100}, "bench")
	require.NoError(b, err)
	defer sub.Close()
	require.NoError(b, sub.SubscribeInitialize(topic))
	pub, err := amqp.NewPublisher(context.Background(), amqp.Config{URL: url})
	require.NoError(b, err)
	defer pub.Close()
	msgs := benchMessages(benchBatch)
	for i := 0; i < b.N; i += benchBatch {
		require.NoError(b, pub.Publish(topic, msgs[:min(benchBatch, b.N-i)]...))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	out, err := sub.Subscribe(ctx, topic)
	require.NoError(b, err)
	for range b.N {
		m := <-out
		go m.Ack()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}
