package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/b2131a45/eventkit/forwarder"
)

// fill creates the outbox name and commits n events to it, 500 per
// transaction, all bound for topic, after a checkpoint (so that the drain
// that follows does not share PostgreSQL with one of earlier writes).
func (b *bench) fill(ctx context.Context, name, topic string, n int) (*forwarder.Outbox, error) {
	b.checkpoint(ctx)
	ob, err := forwarder.NewOutbox(b.db, forwarder.OutboxConfig{
		Dialect: forwarder.Postgres, Registry: b.reg, Source: "bench", Name: name,
		Topic: func(string) string { return topic },
	})
	if err != nil {
		return nil, err
	}
	if err := ob.Setup(ctx); err != nil {
		return nil, err
	}
	for i := 0; i < n; i += 500 {
		tx, err := b.db.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		evts := make([]any, 0, 500)
		for j := i; j < min(i+500, n); j++ {
			evts = append(evts, event(j))
		}
		if err := ob.Add(ctx, tx, evts...); err != nil {
			_ = tx.Rollback()
			return nil, err
		}
		if err := tx.Commit(); err != nil {
			return nil, err
		}
	}
	// Fresh statistics, as an outbox that has been running would have.
	if _, err := b.db.ExecContext(ctx, `ANALYZE "`+ob.Table()+`"`); err != nil {
		return nil, err
	}
	return ob, nil
}

func event(i int) BenchEvent {
	return BenchEvent{
		OrderID:  fmt.Sprintf("order-%d", i%97),
		Customer: fmt.Sprintf("customer-%d@example.com", i%1000),
		Total:    1000 + i%5000,
		Seq:      i,
		Items:    []string{"sku-1", "sku-2", "sku-3"},
	}
}

func (b *bench) drop(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, q := range []string{
		`DROP TABLE IF EXISTS "watermill_` + name + `_scheduled"`,
		`DROP TABLE IF EXISTS "watermill_` + name + `"`,
		`DROP TABLE IF EXISTS "watermill_offsets_` + name + `"`,
		`DROP FUNCTION IF EXISTS "watermill_` + name + `_notify"()`,
	} {
		_, _ = b.db.ExecContext(ctx, q)
	}
}

// checkpoint asks PostgreSQL for a checkpoint: a run that follows starts
// with no dirty buffers to write and no WAL of earlier scenarios to recycle
// (otherwise PostgreSQL checkpoints the earlier scenarios' writes in the
// middle of a later one: the per-message inbox did 3,990/s after the drains
// against 6,073/s with a checkpoint first). It needs a superuser or pg_checkpoint;
// without, the bench says so once and goes on.
func (b *bench) checkpoint(ctx context.Context) {
	_, err := b.db.ExecContext(ctx, "CHECKPOINT")
	if err != nil && !b.checkpointRefused {
		b.checkpointRefused = true
		log.Printf("note: CHECKPOINT refused (%v): runs may share PostgreSQL with a checkpoint of earlier writes", err)
	}
}
