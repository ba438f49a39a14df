package forwarder

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
)

// DeliverAt schedules the events of one Add (or Bus(tx).Publish) call: the
// relay publishes them no earlier than t. See cqrs.DeliverAt.
func DeliverAt(t time.Time) cqrs.PublishOption { return cqrs.DeliverAt(t) }

// DeliverAfter schedules the events of one Add (or Bus(tx).Publish) call:
// the relay publishes them no earlier than d after the call. See
// cqrs.DeliverAfter.
func DeliverAfter(d time.Duration) cqrs.PublishOption { return cqrs.DeliverAfter(d) }

// promoteBatch bounds how many due rows one promotion moves.
const promoteBatch = 1000

// scheduleSchema holds the statements of an outbox's scheduled table: the
// rows Add wrote with a due time still ahead wait there, out of the relay's
// way, until the relay moves them, once due, into the outbox table as
// ordinary pending rows (in due order), so that a row due tomorrow never
// holds back the rows behind it and counts as no lag.
type scheduleSchema struct {
	table  string // quoted
	setup  []string
	insert func(n int) string // args per row: uuid, payload, event_name, topic, due (unix µs)
	// promote (PostgreSQL: one statement) moves up to a limit of due rows.
	// MySQL and SQLite run pick, move and remove in a transaction.
	promote            string
	pick, move, remove func(offsets string) string
	next               string // unix µs of the earliest due row, NULL when none
	count              string
	list               string // uuid, event_name, topic, created µs, due µs; LIMIT arg
}

func newScheduleSchema(d Dialect, name, notifyFn string) scheduleSchema {
	tbl := "watermill_" + name + "_scheduled"
	var s scheduleSchema
	ph := func(i int) string { return "?" }
	q := func(c string) string { return `"` + c + `"` }
	if d == Postgres {
		ph = func(i int) string { return "$" + strconv.Itoa(i) }
	}
	if d == MySQL {
		q = func(c string) string { return "`" + c + "`" }
	}
	s.table = q(tbl)
	main := q("watermill_" + name)
	due := q("due_at")
	var dueOf, nowExpr, micros func(string) string
	switch d {
	case Postgres:
		s.setup = []string{
			`CREATE TABLE IF NOT EXISTS ` + s.table + ` (
				"offset" BIGSERIAL PRIMARY KEY,
				"uuid" VARCHAR(36) NOT NULL,
				"created_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
				"due_at" TIMESTAMPTZ NOT NULL,
				"payload" JSON DEFAULT NULL,
				"event_name" VARCHAR(200) NOT NULL DEFAULT '',
				"topic" VARCHAR(255) NOT NULL DEFAULT ''
			)`,
			`CREATE INDEX IF NOT EXISTS ` + q(tbl+"_due") + ` ON ` + s.table + ` ("due_at", "offset")`,
			// A new scheduled row wakes the relays, which then know when
			// to promote it.
			`DO $$ BEGIN
				IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '` + tbl + `_notify' AND tgrelid = '` + s.table + `'::regclass) THEN
					CREATE TRIGGER "` + tbl + `_notify" AFTER INSERT ON ` + s.table + ` FOR EACH STATEMENT EXECUTE FUNCTION ` + notifyFn + `();
				END IF;
			END $$`,
		}
		dueOf = func(arg string) string { return `to_timestamp(` + arg + `::bigint / 1000000.0)` }
		nowExpr = func(string) string { return "CURRENT_TIMESTAMP" }
		micros = func(c string) string { return `(EXTRACT(EPOCH FROM ` + c + `) * 1000000)::bigint` }
		s.promote = `WITH due AS (
				DELETE FROM ` + s.table + ` WHERE "offset" IN (
					SELECT "offset" FROM ` + s.table + ` WHERE "due_at" <= CURRENT_TIMESTAMP
					ORDER BY "due_at", "offset" LIMIT $1 FOR UPDATE SKIP LOCKED)
				RETURNING "offset", "uuid", "payload", "event_name", "topic", "due_at")
			INSERT INTO ` + main + ` ("uuid", "created_at", "payload", "metadata", "event_name", "topic")
			SELECT "uuid", "due_at", "payload", '{}', "event_name", "topic" FROM due ORDER BY "due_at", "offset"`
	case MySQL:
		s.setup = []string{
			`CREATE TABLE IF NOT EXISTS ` + s.table + ` (
				` + "`offset`" + ` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
				` + "`uuid`" + ` VARCHAR(36) NOT NULL,
				` + "`created_at`" + ` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
				` + "`due_at`" + ` TIMESTAMP(6) NOT NULL,
				` + "`payload`" + ` JSON DEFAULT NULL,
				` + "`event_name`" + ` VARCHAR(200) NOT NULL DEFAULT '',
				` + "`topic`" + ` VARCHAR(255) NOT NULL DEFAULT '',
				KEY ` + "`due` (`due_at`, `offset`)" + `
			) ENGINE=InnoDB`,
		}
		dueOf = func(arg string) string { return `FROM_UNIXTIME(` + arg + ` / 1000000)` }
		nowExpr = func(string) string { return "CURRENT_TIMESTAMP(6)" }
		micros = func(c string) string { return `CAST(UNIX_TIMESTAMP(` + c + `) * 1000000 AS SIGNED)` }
	default: // SQLite: times are unix microseconds
		s.setup = []string{
			`CREATE TABLE IF NOT EXISTS ` + s.table + ` (
				"offset" INTEGER PRIMARY KEY AUTOINCREMENT,
				"uuid" TEXT NOT NULL,
				"created_at" INTEGER NOT NULL,
				"due_at" INTEGER NOT NULL,
				"payload" TEXT,
				"event_name" TEXT NOT NULL DEFAULT '',
				"topic" TEXT NOT NULL DEFAULT ''
			)`,
			`CREATE INDEX IF NOT EXISTS ` + q(tbl+"_due") + ` ON ` + s.table + ` ("due_at", "offset")`,
		}
		dueOf = func(arg string) string { return arg }
		nowExpr = func(arg string) string { return arg }
		micros = func(c string) string { return c }
	}
	s.insert = func(n int) string {
		var b strings.Builder
		b.WriteString("INSERT INTO " + s.table + " (" + q("uuid") + ", " + q("payload") + ", " + q("event_name") + ", " +
			q("topic") + ", " + due)
		if d == SQLite {
			b.WriteString(", " + q("created_at"))
		}
		b.WriteString(") VALUES ")
		per := 5
		if d == SQLite {
			per = 6
		}
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			base := i * per
			fmt.Fprintf(&b, "(%s,%s,%s,%s,%s", ph(base+1), ph(base+2), ph(base+3), ph(base+4), dueOf(ph(base+5)))
			if d == SQLite {
				b.WriteString("," + ph(base+6))
			}
			b.WriteByte(')')
		}
		return b.String()
	}
	if d != Postgres {
		s.pick = func(string) string {
			lock := " FOR UPDATE"
			if d == SQLite {
				lock = ""
			}
			return "SELECT " + q("offset") + " FROM " + s.table + " WHERE " + due + " <= " + nowExpr("?") +
				" ORDER BY " + due + ", " + q("offset") + " LIMIT ?" + lock
		}
		s.move = func(offsets string) string {
			return "INSERT INTO " + main + " (" + q("uuid") + ", " + q("created_at") + ", " + q("payload") + ", " + q("metadata") + ", " +
				q("event_name") + ", " + q("topic") + ") SELECT " + q("uuid") + ", " + due + ", " + q("payload") + ", '{}', " +
				q("event_name") + ", " + q("topic") + " FROM " + s.table + " WHERE " + q("offset") + " IN (" + offsets + ") ORDER BY " +
				due + ", " + q("offset")
		}
		s.remove = func(offsets string) string {
			return "DELETE FROM " + s.table + " WHERE " + q("offset") + " IN (" + offsets + ")"
		}
	}
	s.next = "SELECT MIN(" + micros(due) + ") FROM " + s.table
	s.count = "SELECT COUNT(*) FROM " + s.table
	s.list = "SELECT " + q("uuid") + ", " + q("event_name") + ", " + q("topic") + ", " + micros(q("created_at")) + ", " + micros(due) +
		" FROM " + s.table + " ORDER BY " + due + ", " + q("offset") + " LIMIT " + ph(1)
	return s
}

// dueOf returns the due time a message asks for (events.KeyDeliverAt), and
// whether it is still ahead: only then does the row wait in the scheduled
// table. A value that does not parse is an error: nothing is written.
func dueOf(m *message.Message, now time.Time) (time.Time, bool, error) {
	v := m.Metadata.Get(events.KeyDeliverAt)
	if v == "" {
		return time.Time{}, false, nil
	}
	t, err := events.ParseTime(v)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("forwarder: event %s: %s: %w", m.UUID, events.KeyDeliverAt, err)
	}
	return t, t.After(now), nil
}

// insertScheduled writes the rows that wait for their due time.
func (o *Outbox) insertScheduled(ctx context.Context, q querier, rows []scheduledRow) error {
	per := 5
	if o.cfg.Dialect == SQLite {
		per = 6
	}
	now := time.Now().UnixMicro()
	for start := 0; start < len(rows); start += insertChunk {
		end := min(start+insertChunk, len(rows))
		args := make([]any, 0, (end-start)*per)
		for _, r := range rows[start:end] {
			args = append(args, r.uuid, r.payload, r.name, r.topic, r.due.UnixMicro())
			if o.cfg.Dialect == SQLite {
				args = append(args, now)
			}
		}
		if _, err := q.exec(ctx, o.sched.insert(end-start), args...); err != nil {
			return fmt.Errorf("forwarder: insert into scheduled table of outbox %s: %w", o.cfg.Name, err)
		}
	}
	return nil
}

type scheduledRow struct {
	uuid, payload, name, topic string
	due                        time.Time
}

// Scheduled returns up to limit rows that wait for their due time
// (DeliverAt, DeliverAfter), soonest first, with Record.DueAt set. They are
// not Pending: the relay moves each into the outbox when it is due.
func (o *Outbox) Scheduled(ctx context.Context, limit int) ([]Record, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("forwarder: limit %d: must be positive", limit)
	}
	rs, err := o.db.query(ctx, o.sched.list, limit)
	if err != nil {
		return nil, fmt.Errorf("forwarder: list scheduled rows of outbox %s: %w", o.cfg.Name, err)
	}
	defer rs.Close()
	var out []Record
	for rs.Next() {
		var r Record
		var created, due int64
		if err := rs.Scan(&r.EventID, &r.Name, &r.Topic, &created, &due); err != nil {
			return nil, fmt.Errorf("forwarder: list scheduled rows of outbox %s: %w", o.cfg.Name, err)
		}
		r.CreatedAt = time.UnixMicro(created).UTC()
		r.DueAt = time.UnixMicro(due).UTC()
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("forwarder: list scheduled rows of outbox %s: %w", o.cfg.Name, err)
	}
	return out, nil
}

// nextDue returns when the earliest scheduled row is due, zero when none.
func (o *Outbox) nextDue(ctx context.Context, q querier) (time.Time, error) {
	var next sql.NullInt64
	if err := scanOne(ctx, q, []any{&next}, o.sched.next); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, err
	}
	if !next.Valid {
		return time.Time{}, nil
	}
	return time.UnixMicro(next.Int64), nil
}

// promoteDue moves the scheduled rows that are due into the outbox table, in
// due order, as pending rows whose created_at is their due time (so the lag
// counts from then). It returns how many it moved.
func (o *Outbox) promoteDue(ctx context.Context) (int64, error) {
	if o.cfg.Dialect == Postgres {
		return o.db.exec(ctx, o.sched.promote, promoteBatch)
	}
	var moved int64
	err := retryBusy(ctx, func() error {
		moved = 0
		return o.db.inTx(ctx, func(q querier) error {
			var args []any
			if o.cfg.Dialect == SQLite {
				args = append(args, time.Now().UnixMicro())
			}
			args = append(args, promoteBatch)
			rs, err := q.query(ctx, o.sched.pick(""), args...)
			if err != nil {
				return err
			}
			var offsets []string
			for rs.Next() {
				var off int64
				if err := rs.Scan(&off); err != nil {
					rs.Close()
					return err
				}
				offsets = append(offsets, strconv.FormatInt(off, 10))
			}
			rs.Close()
			if err := rs.Err(); err != nil {
				return err
			}
			if len(offsets) == 0 {
				return nil
			}
			list := strings.Join(offsets, ",")
			if _, err := q.exec(ctx, o.sched.move(list)); err != nil {
				return err
			}
			n, err := q.exec(ctx, o.sched.remove(list))
			moved = n
			return err
		})
	})
	return moved, err
}

// dueCheckEvery is how often the active relay looks for scheduled rows due
// sooner than it knows of, besides right after every wake-up.
const dueCheckEvery = 250 * time.Millisecond

// dueClock is what the active relay knows of the scheduled rows.
type dueClock struct {
	next    time.Time // the earliest due row, zero when none is known
	checked time.Time // when next was last read
}

// promote moves the scheduled rows that are due into the outbox, and keeps
// due.next current: it reads it again after a promotion, after a wake-up
// and at least every dueCheckEvery.
func (r *Relay) promote(ctx context.Context, due *dueClock) error {
	now := time.Now()
	isDue := !due.next.IsZero() && !now.Before(due.next)
	if !isDue && now.Sub(due.checked) < dueCheckEvery {
		return nil
	}
	if isDue {
		n, err := r.ob.promoteDue(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			r.log.Debug("eventkit: scheduled rows due", slog.Int64("rows", n))
		}
	}
	next, err := r.ob.nextDue(ctx, r.ob.db)
	if err != nil {
		return err
	}
	due.next, due.checked = next, now
	return nil
}
