package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/b2131a45/eventkit/cmd/eventkit-bench/internal/brokers"
)

// tally counts, by event id, what a consumer received against what was
// committed: every scenario checks it and fails when an event is missing.
type tally struct {
	mu       sync.Mutex
	want     map[string]bool // committed event ids
	seen     map[string]int
	unknown  int // ids that were never committed (a previous run's, or garbage)
	received int
}

func newTally(ids []string) *tally {
	t := &tally{want: make(map[string]bool, len(ids)), seen: make(map[string]int, len(ids))}
	for _, id := range ids {
		t.want[id] = true
	}
	return t
}

// add records one delivery of id.
func (t *tally) add(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.received++
	if !t.want[id] {
		t.unknown++
		return
	}
	t.seen[id]++
}

// distinct is how many committed events arrived at least once.
func (t *tally) distinct() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.seen)
}

// result returns the events never received and the extra deliveries.
func (t *tally) result() (missing, duplicates int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.seen {
		duplicates += c - 1
	}
	return len(t.want) - len(t.seen), duplicates
}

// check fails loudly when an event is missing; duplicates are reported
// (at-least-once allows them) but are not an error.
func (t *tally) check(label string) (dups int, err error) {
	missing, dups := t.result()
	if missing > 0 {
		return dups, fmt.Errorf("EVENTS LOST: %s: the consumer is missing %d of %d committed events (%d duplicates, %d unknown)",
			label, missing, len(t.want), dups, t.unknown)
	}
	return dups, nil
}

// outboxIDs returns the event ids committed to an outbox table.
func (b *bench) outboxIDs(ctx context.Context, table string) ([]string, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT uuid FROM "`+table+`"`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// consumeAMQP reads queue until every id of t arrived and the queue has
// been quiet for a moment, or until it has been quiet for idle.
func consumeAMQP(url, queue string, t *tally, idle time.Duration) error {
	r, err := dialRabbit(url)
	if err != nil {
		return err
	}
	defer r.close()
	if err := r.ch.Qos(2000, 0, false); err != nil {
		return err
	}
	deliveries, err := r.ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		return err
	}
	quiet := idle
	timer := time.NewTimer(quiet)
	defer timer.Stop()
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return fmt.Errorf("consumer of %s: channel closed", queue)
			}
			id, _ := d.Headers[brokers.UUIDHeader].(string)
			if id == "" {
				id = d.MessageId
			}
			t.add(id)
			if t.distinct() == len(t.want) {
				quiet = 200 * time.Millisecond // late duplicates
			}
			timer.Reset(quiet)
		case <-timer.C:
			return nil
		}
	}
}

// consumeKafka reads topic's partitions from the offsets in from up to
// their current end, recording each record's event id.
func consumeKafka(client sarama.Client, topic string, from map[int32]int64, t *tally) error {
	c, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return err
	}
	defer c.Close()
	for p, start := range from {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return err
		}
		if end <= start {
			continue
		}
		pc, err := c.ConsumePartition(topic, p, start)
		if err != nil {
			return err
		}
		for {
			var m *sarama.ConsumerMessage
			select {
			case m = <-pc.Messages():
			case <-time.After(30 * time.Second):
				_ = pc.Close()
				return fmt.Errorf("kafka partition %d: no record after offset %d of %d", p, start, end)
			}
			id := ""
			for _, h := range m.Headers {
				if string(h.Key) == brokers.UUIDHeader {
					id = string(h.Value)
				}
			}
			t.add(id)
			if m.Offset >= end-1 {
				break
			}
		}
		if err := pc.Close(); err != nil {
			return err
		}
	}
	return nil
}
