package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/forwarder"
)

// countingDiscard confirms everything at once and counts, and records each
// event's seq (the rows' seq are 1..n) in a bitmap: 125 kB for a million
// events, where a set of ids would weigh more than what it measures.
type countingDiscard struct {
	n    atomic.Int64
	mu   sync.Mutex
	seen []uint64
	dups int
	bad  int
}

func newCountingDiscard(n int) *countingDiscard {
	return &countingDiscard{seen: make([]uint64, n/64+1)}
}

func (c *countingDiscard) Publish(_ string, msgs ...*message.Message) error {
	c.n.Add(int64(len(msgs)))
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range msgs {
		seq := seqOf(m.Payload)
		if seq < 0 || seq/64 >= len(c.seen) {
			c.bad++
			continue
		}
		if c.seen[seq/64]&(1<<(seq%64)) != 0 {
			c.dups++
		}
		c.seen[seq/64] |= 1 << (seq % 64)
	}
	return nil
}
func (c *countingDiscard) Close() error { return nil }

// missing counts the seqs 1..n never published.
func (c *countingDiscard) missing(n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := 0
	for i := 1; i <= n; i++ {
		if c.seen[i/64]&(1<<(i%64)) != 0 {
			got++
		}
	}
	return n - got
}

// seqOf reads the "seq" field of a bench payload without decoding it all.
func seqOf(payload []byte) int {
	i := bytes.Index(payload, []byte(`"seq":`))
	if i < 0 {
		return -1
	}
	v, ok := 0, false
	for _, c := range payload[i+6:] {
		if c < '0' || c > '9' {
			break
		}
		v, ok = v*10+int(c-'0'), true
	}
	if !ok {
		return -1
	}
	return v
}

// backlogChild runs the backlog scenario in a child process, so that the
// peak RSS is that of the drain alone and not of the scenarios before it,
// and takes its results.
func (b *bench) backlogChild(ctx context.Context, cpuprofile string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	out, err := os.CreateTemp("", "eventkit-bench-*.json")
	if err != nil {
		return err
	}
	_ = out.Close()
	defer os.Remove(out.Name())
	args := []string{"-scenarios", "backlog", "-backlog", strconv.Itoa(b.o.backlog), "-runs", strconv.Itoa(b.o.runs),
		"-results-json", out.Name()}
	if cpuprofile != "" {
		args = append(args, "-cpuprofile", cpuprofile+".backlog")
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("backlog child process: %w", err)
	}
	return b.readResults(out.Name())
}

// memory drains a backlog of -backlog rows to a publisher that confirms at
// once, sampling the Go heap and the RSS: they must stay flat (batches, not
// the table). It runs once: the backlog takes long to write.
func (b *bench) memory(ctx context.Context) error {
	n := b.o.backlog
	name := b.name("mem")
	defer b.drop(name)
	fmt.Printf("\n== backlog: memory while draining a %d-row outbox (publisher confirms at once) ==\n", n)
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

	pub := newCountingDiscard(n + 1)
	relay, err := forwarder.NewRelay(ob, pub, forwarder.RelayConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseHeap := ms.HeapInuse
	fmt.Printf("  before: heap in use %.1f MiB, RSS %.1f MB\n", mib(baseHeap), mb(procKB("VmRSS")))

	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = relay.Run(rctx)
	}()
	began = time.Now()
	var peak, peakRSS uint64
	marks := []float64{0.1, 0.25, 0.5, 0.75, 0.9}
	for pub.n.Load() < int64(n) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		peakRSS = max(peakRSS, procKB("VmRSS"))
		if len(marks) > 0 && float64(pub.n.Load()) >= marks[0]*float64(n) {
			fmt.Printf("  %3.0f%% drained: heap in use %6.1f MiB (peak so far %6.1f MiB), RSS %6.1f MB (peak so far %6.1f MB)\n",
				marks[0]*100, mib(ms.HeapInuse), mib(peak), mb(procKB("VmRSS")), mb(peakRSS))
			marks = marks[1:]
		}
	}
	elapsed := time.Since(began)
	// Wait for the last marks, then stop.
	for ctx.Err() == nil {
		pending, err := ob.Pending(ctx, 1) // through the pending index
		if err != nil {
			cancel()
			<-done
			return err
		}
		if len(pending) == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	fmt.Printf("  drained %d rows in %v (%.0f rows/s)\n", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	hwm := procKB("VmHWM")
	fmt.Printf("  peak heap in use %.1f MiB (%.1f MiB above the start); peak RSS sampled %.1f MB, process VmHWM %.1f MB\n",
		mib(peak), mib(peak-min(peak, baseHeap)), mb(peakRSS), mb(hwm))
	missing := pub.missing(n)
	fmt.Printf("  publisher: %d missing, %d duplicates (by seq)\n", missing, pub.dups)
	peakMB := mb(max(hwm, peakRSS))
	fmt.Printf("  peak RSS %.1f MB (target < 100 MB) %s\n", peakMB, pass(peakMB < 100))
	b.record(result{Group: "backlog", Label: fmt.Sprintf("backlog %s rows: peak RSS", thousands(float64(n))), Eventkit: peakMB, Unit: "MB",
		Target: "< 100 MB", Met: peakMB < 100})
	b.record(result{Group: "backlog", Label: fmt.Sprintf("backlog %s rows: drain to a discarding publisher", thousands(float64(n))),
		Eventkit: float64(n) / elapsed.Seconds(), Unit: "events/s", HigherBetter: true})
	if missing > 0 || pub.bad > 0 {
		return fmt.Errorf("EVENTS LOST: backlog: %d of %d events never published (%d unreadable)", missing, n, pub.bad)
	}
	return nil
}

// procKB returns a kB field of /proc/self/status, 0 if unknown.
func procKB(key string) uint64 {
	f := strings.Fields(procStatus(key))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseUint(f[0], 10, 64)
	return v
}

func mb(kb uint64) float64 { return float64(kb) * 1024 / 1e6 }

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
