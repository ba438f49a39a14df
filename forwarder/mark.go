package forwarder

import (
	"context"
	"fmt"
	"time"
)

// markAsync marks rows published (or deletes them, with
// OutboxConfig.DeletePublished) on a pooled connection and reports the
// outcome on the returned channel.
func (r *Relay) markAsync(ctx context.Context, rows []*row) chan error {
	done := make(chan error, 1)
	mctx, cancel := r.stopContext(ctx)
	go func() {
		defer cancel()
		query, args := r.ob.s.markPublished(rows, time.Now().UnixMicro(), r.ob.cfg.DeletePublished)
		err := retryBusy(mctx, func() error {
			_, err := r.ob.db.exec(mctx, query, args...)
			return err
		})
		if err != nil {
			// Published but not marked: they are published again later.
			err = fmt.Errorf("mark %d rows published: %w", len(rows), err)
		}
		done <- err
	}()
	return done
}

// stopContext returns the context of one round's publishes and writes: it
// outlives ctx by StopTimeout, so that a stopping relay finishes its batch.
func (r *Relay) stopContext(ctx context.Context) (context.Context, context.CancelFunc) {
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(r.cfg.StopTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-pctx.Done():
		}
	})
	return pctx, func() {
		stop()
		cancel()
	}
}
