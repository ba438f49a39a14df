package forwarder_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/forwarder"
)

// countingBroker confirms at once: the benchmark measures the relay and the
// database, not a broker. The end-to-end comparison with stock Watermill
// against RabbitMQ and Kafka is cmd/eventkit-bench.
type countingBroker struct{ n atomic.Int64 }

func (c *countingBroker) Publish(_ string, msgs ...*message.Message) error {
	c.n.Add(int64(len(msgs)))
	return nil
}
func (c *countingBroker) Close() error { return nil }

// BenchmarkRelayDrain drains an outbox of b.N events and reports events/s.
func BenchmarkRelayDrain(b *testing.B) {
	for _, be := range []backend{pgStd, pgPool, mysqlB, sqlite} {
		b.Run(string(be), func(b *testing.B) {
			e := newEnv(b, be)
			for i := 0; i < b.N; i += 500 {
				e.add(orders(i, min(500, b.N-i))...)
			}
			broker := &countingBroker{}
			b.ReportAllocs()
			b.ResetTimer()
			began := time.Now()
			r := e.start(broker, fastRelayBench())
			for e.pending() > 0 {
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(began)
			b.StopTimer()
			_ = r.stop()
			if broker.n.Load() < int64(b.N) {
				b.Fatalf("relayed %d of %d", broker.n.Load(), b.N)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
		})
	}
}

func fastRelayBench() (cfg forwarder.RelayConfig) {
	cfg = fastRelay()
	cfg.BatchSize = 0 // the default
	return cfg
}

// pending counts pending rows without the full-table counts of Stats.
func (e *env) pending() int64 {
	e.t.Helper()
	recs, err := e.ob.Pending(context.Background(), 1)
	if err != nil {
		e.t.Fatal(err)
	}
	return int64(len(recs))
}
