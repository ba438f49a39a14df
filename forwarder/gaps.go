package forwarder

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// gapTracker keeps, on MySQL, the settled offset: the highest offset at or
// below which no insert is in flight. InnoDB takes an AUTO_INCREMENT value
// before the row is in the index, so a locking read can find a committed
// row with a higher offset and miss, without waiting for it, a row of an
// earlier transaction that is still being inserted; relayed then, the
// later row would overtake it. The relay reads only up to the settled
// offset, which advances over offsets that are present (in any status) and
// over a gap only once it has lasted GapTimeout (a rolled-back insert).
type gapTracker struct {
	mu       sync.Mutex
	started  bool
	settled  int64
	step     int64     // @@auto_increment_increment
	gapSince time.Time // when the gap after settled was first seen; zero: none
}

// advance moves the settled offset as far as the table allows and returns
// it. The scan is a locking read: it waits for rows being committed.
func (g *gapTracker) advance(ctx context.Context, q querier, r *Relay) (int64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.started {
		// Rows older than GapTimeout: every offset below them is in the
		// index or never will be.
		if err := scanOne(ctx, q, []any{&g.settled, &g.step}, r.ob.s.settledStart, r.cfg.GapTimeout.Microseconds()); err != nil {
			return 0, err
		}
		g.step = max(g.step, 1)
		g.started = true
	}
	rs, err := q.query(ctx, r.ob.s.settledScan, g.settled, r.cfg.BatchSize)
	if err != nil {
		return 0, err
	}
	defer rs.Close()
	for rs.Next() {
		var off int64
		if err := rs.Scan(&off); err != nil {
			return 0, err
		}
		if off != g.settled+g.step {
			now := time.Now()
			if g.gapSince.IsZero() {
				g.gapSince = now
			}
			if now.Sub(g.gapSince) < r.cfg.GapTimeout {
				break // wait: the gap may be an insert in flight
			}
			r.log.Debug("eventkit: outbox offsets skipped after GapTimeout (a rolled-back insert)",
				slog.Int64("from", g.settled+g.step), slog.Int64("to", off-g.step))
		}
		g.settled, g.gapSince = off, time.Time{}
	}
	if err := rs.Err(); err != nil {
		return 0, err
	}
	return g.settled, nil
}

// waiting reports whether rows wait behind a gap.
func (g *gapTracker) waiting() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.gapSince.IsZero()
}
