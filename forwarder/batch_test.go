package forwarder

import (
	"fmt"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
)

// BenchmarkRelayBatchBuild measures the relay's work on one fetched batch of
// 100 rows without the database or a broker (batch.go and publish.go, hence
// an internal test): decoding each row's forwarder envelope into a message
// (as fetch does), grouping the batch by topic and building the Publish
// arguments (as relayBatch and publishGroup do). It reports per row.
// BenchmarkRelayDrain measures the whole drain through the public API.
func BenchmarkRelayBatchBuild(b *testing.B) {
	for _, topics := range []int{1, 4} {
		b.Run(fmt.Sprintf("topics=%d", topics), func(b *testing.B) {
			const n = 100
			payloads := make([][]byte, n)
			for i := range payloads {
				msg := message.NewMessage(fmt.Sprintf("0190f5d6-6c1e-7a4e-9c39-%012d", i),
					[]byte(`{"order_id":"order-17","customer":"customer-17@example.com","total_cents":1234,"seq":17,"items":["sku-1","sku-2","sku-3"]}`))
				for _, kv := range [][2]string{{"name", "orders.order_created"}, {"event_id", msg.UUID}, {"event_version", "1"},
					{"occurred_at", "2026-12-01T20:00:00.123456789Z"}, {"correlation_id", msg.UUID}, {"source", "orders"},
					{"partition_key", "order-17"}, {"content_type", "application/json"}} {
					msg.Metadata.Set(kv[0], kv[1])
				}
				var err error
				if payloads[i], err = wrap(fmt.Sprintf("orders.%d", i%topics), msg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				batch := make([]*row, 0, n)
				for i, p := range payloads {
					rw := &row{offset: int64(i), uuid: "x"}
					topic, msg, err := unwrap(p)
					if err != nil {
						b.Fatal(err)
					}
					rw.topic, rw.msg = topic, msg
					batch = append(batch, rw)
				}
				for _, g := range groupByTopic(batch) {
					msgs := make([]*message.Message, len(g))
					for i, rw := range g {
						msgs[i] = rw.msg
					}
					_ = msgs
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
		})
	}
}
