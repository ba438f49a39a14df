package forwarder

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// lead relays while r is the active relay. It returns nil when ctx ends,
// or the error that ended the term.
//
// The database work overlaps with publishing: while a full batch is being
// published, the next one is read after its last row (the cursor), and
// marking a batch published runs while the next one is published (at most
// one mark in flight, on a pooled connection). A rejection, an outage, a
// short batch, or cursorReset batches in a row drop the read ahead, wait
// for the mark and read from the start again.
func (r *Relay) lead(ctx context.Context, l *leader) (err error) {
	var marking chan error // the mark in flight, nil when none
	waitMark := func() error {
		if marking == nil {
			return nil
		}
		err := <-marking
		marking = nil
		return err
	}
	defer func() {
		// The in-flight mark finishes even when ctx ended (see
		// stopContext); an error of it ends the term like any other.
		if merr := waitMark(); merr != nil && err == nil && ctx.Err() == nil {
			err = merr
		}
	}()

	// The read of the next batch overlaps with publishing this one too: it
	// runs on the leader's connection, which nothing else uses meanwhile.
	var prefetch chan fetched // the read in flight, nil when none
	takePrefetch := func() (fetched, bool) {
		if prefetch == nil {
			return fetched{}, false
		}
		f := <-prefetch
		prefetch = nil
		return f, true
	}
	defer takePrefetch()

	poll := r.cfg.MinPollInterval // adaptive wait when nothing wakes us
	heldWait := time.Millisecond  // wait while committed rows are held back
	outage := time.Duration(0)    // current outage backoff, 0 when none
	var cursor *row               // last row of the previous batch, all confirmed
	streak := 0                   // batches read after a cursor
	var due dueClock              // scheduled rows
	for ctx.Err() == nil {
		if l.renew != nil {
			if err := l.renew(ctx); err != nil {
				return err
			}
		}
		if err := r.promote(ctx, &due); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !retryable(err) {
				return fmt.Errorf("promote scheduled rows: %w", err)
			}
		}
		f, ok := takePrefetch()
		if ok && cursor == nil {
			ok = false // read for a batch that was not all confirmed: drop it
		}
		if !ok {
			if cursor == nil {
				if err := waitMark(); err != nil {
					return err
				}
			}
			l.drain()
			f.batch, f.err = r.fetch(ctx, l.q, cursor)
		}
		batch, err := f.batch, f.err
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if retryable(err) {
				sleep(ctx, r.cfg.MinPollInterval)
				continue
			}
			return fmt.Errorf("read outbox: %w", err)
		}
		if len(batch) == 0 {
			if cursor != nil {
				cursor = nil // caught up: read from the start once marked
				continue
			}
			held := r.ob.cfg.Dialect == MySQL && r.gaps.waiting()
			if r.ob.cfg.Dialect == Postgres {
				if err := scanOne(ctx, l.q, []any{&held}, r.ob.s.held); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("read outbox: %w", err)
				}
			}
			var wait time.Duration
			switch {
			case held:
				// Committed rows wait for an older transaction to end; it
				// may not notify (it wrote no outbox row, or it is in
				// another database of the cluster), so poll, at least every
				// maxHeldWait: one index probe.
				wait = heldWait
				heldWait = min(2*heldWait, maxHeldWait, r.cfg.PollInterval)
			case l.listen:
				wait = r.cfg.PollInterval
			default:
				wait = poll
				poll = min(2*poll, r.cfg.PollInterval)
			}
			if !due.next.IsZero() {
				wait = max(min(wait, time.Until(due.next)), 0)
			}
			if err := r.idle(ctx, l, wait); err != nil {
				return err
			}
			due.checked = time.Time{} // woken: new scheduled rows may be due sooner
			continue
		}
		heldWait = time.Millisecond
		poll = r.cfg.MinPollInterval
		if r.cfg.Observer != nil {
			r.cfg.Observer.BatchRead(r.ob.cfg.Name, len(batch))
		}
		full := len(batch) == r.cfg.BatchSize
		if full && batch[0].attempts == 0 && streak+1 < cursorReset {
			prefetch = make(chan fetched, 1)
			go func(after *row) {
				var f fetched
				f.batch, f.err = r.fetch(ctx, l.q, after)
				prefetch <- f
			}(batch[len(batch)-1])
		}

		began := time.Now()
		res, confirmed, err := r.relayBatch(ctx, batch)
		r.lastBatch.Store(&Batch{At: time.Now().UTC(), Rows: len(batch), Confirmed: len(confirmed), Took: time.Since(began)})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := waitMark(); err != nil {
			return err
		}
		if len(confirmed) > 0 {
			marking = r.markAsync(ctx, confirmed)
		}

		streak++
		cursor = nil
		if res.clean && full && streak < cursorReset {
			cursor = batch[len(batch)-1]
		} else {
			streak = 0
		}
		switch {
		case res.outage != nil:
			level := slog.LevelDebug
			if outage == 0 {
				level = slog.LevelWarn // once per outage, not per retry
				r.outageSince.CompareAndSwap(0, time.Now().UnixNano())
			}
			if res.confirmed > 0 {
				// Back-pressure with progress (a queue that drains): keep
				// the wait short instead of escalating it.
				outage = r.cfg.RetryInterval
			} else {
				outage = min(max(2*outage, r.cfg.RetryInterval), r.cfg.MaxBackoff)
			}
			r.log.Log(ctx, level, "eventkit: broker unavailable or pushing back; relay paused",
				slogErr(res.outage), slog.Int("confirmed", res.confirmed), slog.Duration("retry_in", outage))
			sleep(ctx, outage)
			continue
		case outage > 0:
			r.log.Info("eventkit: broker available again; relay resumed")
			outage = 0
		}
		r.outageSince.Store(0) // for Health: this round reached the broker
		if res.retryAttempts > 0 {
			sleep(ctx, min(r.cfg.RetryInterval<<min(res.retryAttempts-1, 20), r.cfg.MaxBackoff))
		}
		// After a short batch (cursor reset) the next round waits for the
		// mark and reads again before it idles: a row committed during the
		// read but held back by an older transaction is then still seen.
	}
	return nil
}
