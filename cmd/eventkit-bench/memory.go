package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/forwarder"
)

// countingDiscard confirms everything at once and counts.
type countingDiscard struct{ n atomic.Int64 }

func (c *countingDiscard) Publish(_ string, msgs ...*message.Message) error {
	c.n.Add(int64(len(msgs)))
	return nil
}
func (c *countingDiscard) Close() error { return nil }

// memory drains a backlog of -backlog rows to a publisher that confirms at
// once, sampling the Go heap: it must stay flat (batches, not the table).
func (b *bench) memory(ctx context.Context) error {
	n := b.o.backlog
	name := b.name("mem")
	defer b.drop(name)
	fmt.Printf("\n== memory while draining a %d-row backlog (publisher confirms at once) ==\n", n)
	ob, err := b.fill(ctx, name, "bench.memory", 0)
	if err != nil {
		return err
	}
	began := time.Now()
	// Rows built in SQL: valid forwarder envelopes, like Add writes.
	_, err = b.db.ExecContext(ctx, `INSERT INTO "`+ob.Table()+`" (uuid, payload, metadata, event_name, topic)
		SELECT u, json_build_object(
			'destination_topic', 'bench.memory', 'uuid', u,
			'payload', encode(convert_to('{"order_id":"order-' || i || '","customer":"customer@example.com","total_cents":1234,"seq":' || i || ',"items":["sku-1","sku-2","sku-3"]}', 'UTF8'), 'base64'),
			'metadata', json_build_object('name', 'bench.order_created', 'event_id', u, 'event_version', '1', 'source', 'bench', 'content_type', 'application/json')
		), '{}', 'bench.order_created', 'bench.memory'
		FROM (SELECT gen_random_uuid()::text AS u, i FROM generate_series(1, $1::int) AS i) AS s`, n)
	if err != nil {
		return err
	}
	if _, err := b.db.ExecContext(ctx, `ANALYZE "`+ob.Table()+`"`); err != nil {
		return err
	}
	fmt.Printf("  backlog written in %v\n", time.Since(began).Round(time.Millisecond))

	pub := &countingDiscard{}
	relay, err := forwarder.NewRelay(ob, pub, forwarder.RelayConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseHeap := ms.HeapInuse
	fmt.Printf("  before: heap in use %.1f MiB, RSS %s\n", mib(baseHeap), procStatus("VmRSS"))

	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = relay.Run(rctx)
	}()
	began = time.Now()
	var peak uint64
	marks := []float64{0.1, 0.25, 0.5, 0.75, 0.9}
	for pub.n.Load() < int64(n) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		if len(marks) > 0 && float64(pub.n.Load()) >= marks[0]*float64(n) {
			fmt.Printf("  %3.0f%% drained: heap in use %6.1f MiB (peak so far %6.1f MiB)\n", marks[0]*100, mib(ms.HeapInuse), mib(peak))
			marks = marks[1:]
		}
	}
	elapsed := time.Since(began)
	// Wait for the last marks, then stop.
	for ctx.Err() == nil {
		var pending bool
		if err := b.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM "`+ob.Table()+`" WHERE status = 0)`).Scan(&pending); err != nil {
			cancel()
			<-done
			return err
		}
		if !pending {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	fmt.Printf("  drained %d rows in %v (%.0f rows/s)\n", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	fmt.Printf("  peak heap in use %.1f MiB (%.1f MiB above the start); process peak RSS %s\n",
		mib(peak), mib(peak-min(peak, baseHeap)), procStatus("VmHWM"))
	return nil
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func procStatus(key string) string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "n/a"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, key+":") {
			return strings.TrimSpace(strings.TrimPrefix(line, key+":"))
		}
	}
	return "n/a"
}
