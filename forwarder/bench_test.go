package forwarder_test

import (
	"context"
	"sync/atomic"
	"syscall"
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

// BenchmarkRelayDrain drains an outbox of b.N events and reports events/s
// and this process's CPU per event (the relay's own work, with the
// database driver's and the poll of pending rows, not the database's).
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
			began, cpu0 := time.Now(), processCPU()
			r := e.start(broker, fastRelayBench())
			for e.pending() > 0 {
				time.Sleep(time.Millisecond)
			}
			elapsed, cpu := time.Since(began), processCPU()-cpu0
			b.StopTimer()
			_ = r.stop()
			if broker.n.Load() < int64(b.N) {
				b.Fatalf("relayed %d of %d", broker.n.Load(), b.N)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(b.N), "cpu-µs/event")
		})
	}
}

// processCPU is this process's user and system CPU so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
