package forwarder

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// FailedFilter selects failed rows for the paged inspection and the bulk
// repairs (FailedPage, CountFailed, RequeueFailed, DeleteFailed). Its zero
// value selects every failed row; set fields combine with AND.
type FailedFilter struct {
	// EventIDs selects these rows only. Defaults to none: any id.
	EventIDs []string
	// Topic selects the rows of one destination topic. Defaults to "": any.
	Topic string
	// Name selects the rows of one event name. Defaults to "": any.
	Name string
	// ErrorContains selects the rows whose last error contains this text,
	// compared as LIKE compares (case-sensitive on PostgreSQL, not on MySQL
	// and SQLite). Defaults to "": any.
	ErrorContains string
	// Limit bounds how many rows RequeueFailed and DeleteFailed change, the
	// oldest first: an operator who confirmed a count changes no more than
	// that. FailedPage and CountFailed ignore it. Defaults to 0: all.
	Limit int64
}

// FailedRow is a failed row as FailedPage returns it: the Record with what
// the relay would publish.
type FailedRow struct {
	Record
	// Offset is the row's position in the table: pass the last one of a
	// page as FailedPage's after to read the next page.
	Offset int64
	// Payload is the event's encoded payload (the inner message of
	// Watermill's forwarder envelope), nil when the row's payload column
	// does not decode (then PayloadError says why).
	Payload      []byte
	PayloadError string
	// Metadata is the event's envelope as metadata.
	Metadata map[string]string
}

// maxFilterIDs bounds FailedFilter.EventIDs: the ids are statement
// arguments.
const maxFilterIDs = insertChunk

// bulkBatch is how many rows one statement of RequeueFailed and
// DeleteFailed changes, so that no lock is held long.
const bulkBatch = 500

// FailedPage returns up to limit failed rows that match f, oldest first,
// after the row at offset after (0: from the first), with their payload and
// metadata. Each call reads at most limit rows through the failed-rows
// index: page through a table of any size with the Offset of the last row.
// It returns an error for a limit outside 1 to 10,000 or more than 500
// EventIDs, and the database's error.
func (o *Outbox) FailedPage(ctx context.Context, f FailedFilter, after int64, limit int) ([]FailedRow, error) {
	if limit <= 0 || limit > 10_000 {
		return nil, fmt.Errorf("forwarder: failed page limit %d: want 1 to 10000", limit)
	}
	where, args, err := o.failedWhere(f, after)
	if err != nil {
		return nil, err
	}
	payload := o.s.col("payload")
	if o.cfg.Dialect == Postgres {
		payload += "::text"
	}
	q := "SELECT " + o.s.col("offset") + ", " + o.s.col("uuid") + ", " + o.s.col("event_name") + ", " + o.s.col("topic") + ", " +
		o.s.col("attempts") + ", COALESCE(" + o.s.col("last_error") + ", ''), " + o.s.created() + ", " + payload +
		" FROM " + o.s.table + " WHERE " + where + " ORDER BY " + o.s.col("offset") + " LIMIT " + strconv.Itoa(limit)
	rs, err := o.db.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("forwarder: failed rows of outbox %s: %w", o.cfg.Name, err)
	}
	defer rs.Close()
	var out []FailedRow
	for rs.Next() {
		var r FailedRow
		var created int64
		var raw []byte
		if err := rs.Scan(&r.Offset, &r.EventID, &r.Name, &r.Topic, &r.Attempts, &r.LastError, &created, &raw); err != nil {
			return nil, fmt.Errorf("forwarder: failed rows of outbox %s: %w", o.cfg.Name, err)
		}
		r.CreatedAt = time.UnixMicro(created).UTC()
		if _, msg, err := unwrap(raw); err != nil {
			r.PayloadError = err.Error()
		} else {
			r.Payload, r.Metadata = msg.Payload, msg.Metadata
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("forwarder: failed rows of outbox %s: %w", o.cfg.Name, err)
	}
	return out, nil
}

// CountFailed counts the failed rows that match f (through the failed-rows
// index: the cost grows with the failed rows, not the table).
func (o *Outbox) CountFailed(ctx context.Context, f FailedFilter) (int64, error) {
	where, args, err := o.failedWhere(f, 0)
	if err != nil {
		return 0, err
	}
	var n int64
	if err := scanOne(ctx, o.db, []any{&n}, "SELECT COUNT(*) FROM "+o.s.table+" WHERE "+where, args...); err != nil {
		return 0, fmt.Errorf("forwarder: count failed rows of outbox %s: %w", o.cfg.Name, err)
	}
	return n, nil
}

// RequeueFailed moves the failed rows that match f back to pending with a
// fresh attempt budget, as Requeue does by id, in statements of 500 rows.
// It returns how many rows it moved, also when ctx ends or a statement
// fails part-way.
func (o *Outbox) RequeueFailed(ctx context.Context, f FailedFilter) (int64, error) {
	n, err := o.bulkFailed(ctx, f, "UPDATE "+o.s.table+" SET "+o.s.col("status")+" = 0, "+o.s.col("attempts")+" = 0")
	if n > 0 && o.cfg.Dialect == Postgres {
		if _, nerr := o.db.exec(ctx, `SELECT pg_notify($1, '')`, o.s.channel); nerr != nil {
			o.log.Warn("eventkit: cannot notify relays after requeue", slogErr(nerr))
		}
	}
	o.log.Info("eventkit: requeued failed events", slog.Int64("rows", n))
	return n, err
}

// DeleteFailed deletes the failed rows that match f, in statements of 500
// rows: their events are never published. It is for events that must not
// go out (a test event, one superseded by hand); pending and published rows
// are never deleted. It returns how many rows it deleted, also when ctx
// ends or a statement fails part-way.
func (o *Outbox) DeleteFailed(ctx context.Context, f FailedFilter) (int64, error) {
	n, err := o.bulkFailed(ctx, f, "DELETE FROM "+o.s.table)
	o.log.Info("eventkit: deleted failed events", slog.Int64("rows", n))
	return n, err
}

// bulkFailed runs change (an UPDATE … SET … or DELETE FROM without WHERE)
// on the failed rows of f, a batch of offsets at a time.
func (o *Outbox) bulkFailed(ctx context.Context, f FailedFilter, change string) (int64, error) {
	var total int64
	var after int64
	for {
		where, args, err := o.failedWhere(f, after)
		if err != nil {
			return total, err
		}
		batch := int64(bulkBatch)
		if f.Limit > 0 {
			batch = min(batch, f.Limit-total)
			if batch <= 0 {
				return total, nil
			}
		}
		q := "SELECT " + o.s.col("offset") + " FROM " + o.s.table + " WHERE " + where +
			" ORDER BY " + o.s.col("offset") + " LIMIT " + strconv.FormatInt(batch, 10)
		rs, err := o.db.query(ctx, q, args...)
		if err != nil {
			return total, fmt.Errorf("forwarder: outbox %s: %w", o.cfg.Name, err)
		}
		var offs []string
		for rs.Next() {
			var off int64
			if err := rs.Scan(&off); err != nil {
				rs.Close()
				return total, fmt.Errorf("forwarder: outbox %s: %w", o.cfg.Name, err)
			}
			offs = append(offs, strconv.FormatInt(off, 10))
			after = off
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return total, fmt.Errorf("forwarder: outbox %s: %w", o.cfg.Name, err)
		}
		if len(offs) == 0 {
			return total, nil
		}
		// Only rows still failed change: one requeued or relayed meanwhile
		// is left alone.
		n, err := o.db.exec(ctx, change+" WHERE "+o.s.col("status")+" = 2 AND "+o.s.col("offset")+" IN ("+strings.Join(offs, ",")+")")
		total += n
		if err != nil {
			return total, fmt.Errorf("forwarder: outbox %s: %w", o.cfg.Name, err)
		}
		if int64(len(offs)) < batch {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

// failedWhere returns the WHERE clause of f's failed rows after an offset.
func (o *Outbox) failedWhere(f FailedFilter, after int64) (string, []any, error) {
	if len(f.EventIDs) > maxFilterIDs {
		return "", nil, fmt.Errorf("forwarder: FailedFilter.EventIDs: %d ids, at most %d", len(f.EventIDs), maxFilterIDs)
	}
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return o.s.ph(len(args))
	}
	conds := []string{o.s.col("status") + " = 2"}
	if after > 0 {
		conds = append(conds, o.s.col("offset")+" > "+arg(after))
	}
	if f.Topic != "" {
		conds = append(conds, o.s.col("topic")+" = "+arg(f.Topic))
	}
	if f.Name != "" {
		conds = append(conds, o.s.col("event_name")+" = "+arg(f.Name))
	}
	if f.ErrorContains != "" {
		pattern := "%" + likeEscaper.Replace(f.ErrorContains) + "%"
		conds = append(conds, o.s.col("last_error")+" LIKE "+arg(pattern)+" ESCAPE '!'")
	}
	if len(f.EventIDs) > 0 {
		ids := make([]string, len(f.EventIDs))
		for i, id := range f.EventIDs {
			ids[i] = arg(id)
		}
		conds = append(conds, o.s.col("uuid")+" IN ("+strings.Join(ids, ",")+")")
	}
	return strings.Join(conds, " AND "), args, nil
}

// likeEscaper escapes a LIKE pattern for ESCAPE '!'.
var likeEscaper = strings.NewReplacer("!", "!!", "%", "!%", "_", "!_")

// created is the expression of created_at in unix microseconds.
func (s schema) created() string {
	switch s.d {
	case Postgres:
		return `(EXTRACT(EPOCH FROM "created_at") * 1000000)::bigint`
	case MySQL:
		return "CAST(UNIX_TIMESTAMP(`created_at`) * 1000000 AS SIGNED)"
	default:
		return `"created_at"`
	}
}
