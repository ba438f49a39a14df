package forwarder

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Stats counts the rows of an outbox by state.
type Stats struct {
	// Pending rows wait for the relay (including rows being retried after
	// a rejection).
	Pending int64
	// Failed rows were rejected MaxAttempts times and are parked until
	// Requeue.
	Failed int64
	// Published rows were confirmed by the broker and wait for Purge.
	Published int64
	// Scheduled rows wait for their due time (DeliverAt, DeliverAfter);
	// they are not pending, and no lag, until they are due.
	Scheduled int64
	// NextDueAt is when the earliest scheduled row is due; zero when none.
	NextDueAt time.Time
	// OldestPendingAge is the outbox lag: how long ago the next row the
	// relay will publish was written (its transaction started). Zero when
	// nothing is pending.
	OldestPendingAge time.Duration
}

// Record is one outbox row as the inspection methods show it.
type Record struct {
	// EventID is the event id (the message UUID).
	EventID string
	// Name is the event name.
	Name string
	// Topic is the broker topic the relay publishes the event to.
	Topic string
	// Attempts counts the broker's rejections of the event.
	Attempts int
	// LastError is the last rejection, or "".
	LastError string
	// CreatedAt is when the row was written (its transaction started); for
	// a row that was scheduled, when it became due.
	CreatedAt time.Time
	// DueAt is when a scheduled row is due (Scheduled only).
	DueAt time.Time
}

// Stats returns the outbox counters and lag. Counting reads the whole table;
// call it for monitoring at intervals of seconds, not per request.
func (o *Outbox) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	rs, err := o.db.query(ctx, o.s.counts())
	if err != nil {
		return st, fmt.Errorf("forwarder: stats of outbox %s: %w", o.cfg.Name, err)
	}
	defer rs.Close()
	for rs.Next() {
		var status, n int64
		if err := rs.Scan(&status, &n); err != nil {
			return st, fmt.Errorf("forwarder: stats of outbox %s: %w", o.cfg.Name, err)
		}
		switch status {
		case statusPending:
			st.Pending = n
		case statusPublished:
			st.Published = n
		case statusFailed:
			st.Failed = n
		}
	}
	if err := rs.Err(); err != nil {
		return st, fmt.Errorf("forwarder: stats of outbox %s: %w", o.cfg.Name, err)
	}
	rs.Close()
	if err := scanOne(ctx, o.db, []any{&st.Scheduled}, o.sched.count); err != nil {
		return st, fmt.Errorf("forwarder: stats of outbox %s: %w", o.cfg.Name, err)
	}
	if st.Scheduled > 0 {
		if st.NextDueAt, err = o.nextDue(ctx, o.db); err != nil {
			return st, fmt.Errorf("forwarder: stats of outbox %s: %w", o.cfg.Name, err)
		}
		st.NextDueAt = st.NextDueAt.UTC()
	}
	if st.Pending == 0 {
		return st, nil
	}
	var args []any
	if o.cfg.Dialect == SQLite {
		args = append(args, time.Now().UnixMicro())
	}
	var micros sql.NullInt64
	err = scanOne(ctx, o.db, []any{&micros}, o.s.oldestPending(), args...)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("forwarder: lag of outbox %s: %w", o.cfg.Name, err)
	}
	st.OldestPendingAge = max(time.Duration(micros.Int64)*time.Microsecond, 0)
	return st, nil
}

// Pending returns up to limit pending rows in the order the relay publishes
// them (seed: GetPendingAsync).
func (o *Outbox) Pending(ctx context.Context, limit int) ([]Record, error) {
	return o.list(ctx, statusPending, limit)
}

// Failed returns up to limit rows parked as failed, oldest first, with the
// broker's last error and the attempt count.
func (o *Outbox) Failed(ctx context.Context, limit int) ([]Record, error) {
	return o.list(ctx, statusFailed, limit)
}

func (o *Outbox) list(ctx context.Context, status, limit int) ([]Record, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("forwarder: limit %d: must be positive", limit)
	}
	rs, err := o.db.query(ctx, o.s.list(status), limit)
	if err != nil {
		return nil, fmt.Errorf("forwarder: list outbox %s: %w", o.cfg.Name, err)
	}
	defer rs.Close()
	var out []Record
	for rs.Next() {
		var r Record
		var created int64
		if err := rs.Scan(&r.EventID, &r.Name, &r.Topic, &r.Attempts, &r.LastError, &created); err != nil {
			return nil, fmt.Errorf("forwarder: list outbox %s: %w", o.cfg.Name, err)
		}
		r.CreatedAt = time.UnixMicro(created).UTC()
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("forwarder: list outbox %s: %w", o.cfg.Name, err)
	}
	return out, nil
}

// Requeue moves failed rows, by event id, back to pending with a fresh
// attempt budget; the relay publishes them before younger rows. Ids of rows
// that are not failed (pending, published or unknown) are ignored, so
// Requeue is idempotent. It returns how many rows it moved, also when a
// statement fails part-way (ids are updated in statements of up to 500).
func (o *Outbox) Requeue(ctx context.Context, eventIDs ...string) (int64, error) {
	var total int64
	for start := 0; start < len(eventIDs); start += insertChunk {
		end := min(start+insertChunk, len(eventIDs))
		args := make([]any, 0, end-start)
		for _, id := range eventIDs[start:end] {
			args = append(args, id)
		}
		n, err := o.db.exec(ctx, o.s.requeue(end-start), args...)
		if err != nil {
			return total, fmt.Errorf("forwarder: requeue in outbox %s: %w", o.cfg.Name, err)
		}
		total += n
	}
	if total > 0 && o.cfg.Dialect == Postgres {
		// Wake the relays: an UPDATE does not fire the insert trigger.
		if _, err := o.db.exec(ctx, `SELECT pg_notify($1, '')`, o.s.channel); err != nil {
			o.log.Warn("eventkit: cannot notify relays after requeue", slogErr(err))
		}
	}
	o.log.Info("eventkit: requeued failed events", slog.Int64("rows", total))
	return total, nil
}

// Purge deletes published rows that were published more than olderThan
// ago, in statements of PurgeBatchSize rows so that no lock is held long.
// Pending and failed rows are never deleted. It returns how many rows it
// deleted, also when ctx ends or a statement fails part-way.
func (o *Outbox) Purge(ctx context.Context, olderThan time.Duration) (int64, error) {
	if olderThan < 0 {
		return 0, fmt.Errorf("forwarder: purge: olderThan %v is negative", olderThan)
	}
	batch := o.cfg.PurgeBatchSize
	var arg any = olderThan.Microseconds()
	if o.cfg.Dialect == SQLite {
		arg = time.Now().Add(-olderThan).UnixMicro()
	}
	var total int64
	for {
		n, err := o.db.exec(ctx, o.s.purge(), arg, batch)
		total += n
		if err != nil {
			return total, fmt.Errorf("forwarder: purge outbox %s: %w", o.cfg.Name, err)
		}
		if n < int64(batch) {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}
