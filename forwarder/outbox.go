package forwarder

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/tracing"
)

// Defaults of OutboxConfig.
const (
	// OutboxNameDefault is the default OutboxConfig.Name.
	OutboxNameDefault = "outbox"
	// PurgeBatchSizeDefault is the default OutboxConfig.PurgeBatchSize.
	PurgeBatchSizeDefault = 1000
)

// insertChunk is the most rows one INSERT statement writes.
const insertChunk = 500

// Errors.
var (
	// ErrNotTransaction is returned by Add (and by the Publish of a Bus)
	// when tx is not a transaction Add can write in. See Tx.
	ErrNotTransaction = errors.New("forwarder: not a transaction")
	// ErrRelayRunning is returned by Run when the relay is already running.
	ErrRelayRunning = errors.New("forwarder: relay is already running")
)

// OutboxConfig configures an Outbox. Registry is required; the zero value of
// every other field is its documented default.
type OutboxConfig struct {
	// Dialect of the database. Defaults to DialectAuto: detected from the
	// driver of the *sql.DB; NewOutboxPgx always uses Postgres.
	Dialect Dialect
	// Registry encodes events and knows their names and versions. Required.
	Registry *events.Registry
	// Source is written to the source header of every event: the producing
	// service or bounded context. Defaults to "" (header not written).
	Source string
	// Name names the outbox; its tables derive from it ("watermill_" + Name,
	// which is also the table of a stock Watermill forwarder whose
	// ForwarderTopic is Name), so several outboxes can share a database.
	// 1 to 40 characters of a-z, 0-9 and '_'. Defaults to OutboxNameDefault.
	Name string
	// Topic maps an event name to the broker topic the relay publishes it
	// to. Defaults to cqrs.EventNameTopic (the event name). Consumers'
	// processors must use the same mapping.
	Topic cqrs.TopicFunc
	// DeletePublished makes relays delete each row once the broker has
	// confirmed it, instead of marking it published (status 1) for Purge
	// to delete later. The guarantee is the same: a row leaves the pending
	// set only after its confirm, and a relay stopped before the delete
	// publishes it again. The database does less: on PostgreSQL a mark is
	// a new row version with an index entry (status is in the pending
	// index's predicate, so it is never a HOT update) and its full WAL
	// image, a delete only sets the old version's xmax — in this project's
	// measurements 3–5 µs of backend CPU per event instead of 12–14 µs.
	// The cost is visibility: published rows are gone at once, so
	// Stats.Published stays 0 (as do `eventkit outbox stats` and the
	// console's published count), and no published row can be looked at
	// after the fact. Failed rows are kept either way. Defaults
	// to false: rows are marked and kept until Purge.
	DeletePublished bool
	// PurgeBatchSize is how many rows one statement of Purge deletes.
	// Defaults to PurgeBatchSizeDefault.
	PurgeBatchSize int
	// Logger receives the outbox's and its relays' logs. Defaults to
	// discarding. Payloads and connection strings are never logged.
	Logger *slog.Logger
	// TracerProvider turns on OpenTelemetry tracing: Add starts a producer
	// "create" span per event and stores its W3C trace context
	// (events.KeyTraceParent, events.KeyTraceState) in the event's
	// metadata, and relays of this outbox start a "send" span per publish
	// linked to those. Defaults to nil: tracing off, nothing added.
	TracerProvider trace.TracerProvider
	// MessagingSystem is the messaging.system attribute of the spans, e.g.
	// "rabbitmq" or "kafka" (transports.Transport.MessagingSystem).
	// Defaults to "" (attribute left out).
	MessagingSystem string
	// Validate, if set, checks each encoded event before Add writes
	// anything (cqrs.BusConfig.Validate; contracts.Validator.ValidateMessage
	// fits). Its error fails Add and Bus(tx).Publish, wrapped. Defaults to
	// nil: no check.
	Validate func(msg *message.Message) error
}

var validOutboxName = regexp.MustCompile(`^[a-z0-9_]{1,40}$`)

func (c *OutboxConfig) setDefaults() {
	if c.Name == "" {
		c.Name = OutboxNameDefault
	}
	if c.Topic == nil {
		c.Topic = cqrs.EventNameTopic
	}
	if c.PurgeBatchSize == 0 {
		c.PurgeBatchSize = PurgeBatchSizeDefault
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (c OutboxConfig) validate() error {
	switch {
	case c.Registry == nil:
		return errors.New("forwarder: OutboxConfig.Registry is required")
	case !validOutboxName.MatchString(c.Name):
		return fmt.Errorf("forwarder: OutboxConfig.Name %q: want 1-40 characters of a-z, 0-9 and _", c.Name)
	case c.Dialect < Postgres || c.Dialect > SQLite:
		return fmt.Errorf("forwarder: OutboxConfig.Dialect %v is not supported", c.Dialect)
	case c.PurgeBatchSize < 0:
		return fmt.Errorf("forwarder: OutboxConfig.PurgeBatchSize %d is negative", c.PurgeBatchSize)
	}
	return nil
}

// Outbox is a transactional outbox: Add writes integration events in the
// caller's database transaction, a Relay moves committed ones to the broker,
// and the inspection methods (Stats, Pending, Failed, Requeue, Purge) serve
// operators. It is safe for concurrent use.
type Outbox struct {
	db    database
	cfg   OutboxConfig
	s     schema
	sched scheduleSchema
	enc   *cqrs.Bus // encodes events; never publishes
	log   *slog.Logger

	tracer trace.Tracer // nil when tracing is off
}

// NewOutbox returns an outbox stored in db, a PostgreSQL, MySQL/MariaDB or
// SQLite database. Call Setup once before use.
//
// SQLite: open db with modernc.org/sqlite and a busy timeout, e.g.
// "file:app.db?_pragma=busy_timeout(5000)&_txlock=immediate"; Setup turns
// on WAL. SQLite has one writer at a time: the relay's updates wait for the
// application's transactions and the other way round.
func NewOutbox(db *sql.DB, cfg OutboxConfig) (*Outbox, error) {
	if db == nil {
		return nil, errors.New("forwarder: db is nil")
	}
	if cfg.Dialect == DialectAuto {
		cfg.Dialect = detectDialect(db)
	}
	return newOutbox(newStdDB(db), cfg)
}

// NewOutboxPgx returns a PostgreSQL outbox using a pgx pool. Add accepts the
// pool's transactions (pgx.Tx) as well as *sql.Tx.
func NewOutboxPgx(pool *pgxpool.Pool, cfg OutboxConfig) (*Outbox, error) {
	if pool == nil {
		return nil, errors.New("forwarder: pool is nil")
	}
	if cfg.Dialect == DialectAuto {
		cfg.Dialect = Postgres
	}
	if cfg.Dialect != Postgres {
		return nil, fmt.Errorf("forwarder: OutboxConfig.Dialect %v: a pgx pool is PostgreSQL", cfg.Dialect)
	}
	return newOutbox(newPgxDB(pool), cfg)
}

func newOutbox(db database, cfg OutboxConfig) (*Outbox, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	enc, err := cqrs.NewBus(discardPublisher{}, cqrs.BusConfig{Registry: cfg.Registry, Source: cfg.Source, Topic: cfg.Topic, Validate: cfg.Validate})
	if err != nil {
		return nil, fmt.Errorf("forwarder: %w", err)
	}
	s := newSchema(cfg.Dialect, cfg.Name)
	sched := newScheduleSchema(cfg.Dialect, cfg.Name, `"watermill_`+cfg.Name+`_notify"`)
	s.setup = append(s.setup, sched.setup...)
	return &Outbox{
		db:     db,
		cfg:    cfg,
		s:      s,
		sched:  sched,
		enc:    enc,
		log:    cfg.Logger.With(slog.String("outbox", cfg.Name)),
		tracer: tracing.Tracer(cfg.TracerProvider),
	}, nil
}

func detectDialect(db *sql.DB) Dialect {
	t := reflect.TypeOf(db.Driver())
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch pkg := t.PkgPath(); {
	case strings.Contains(pkg, "jackc/pgx"), strings.HasSuffix(pkg, "lib/pq"):
		return Postgres
	case strings.HasSuffix(pkg, "go-sql-driver/mysql"):
		return MySQL
	case strings.Contains(pkg, "sqlite"):
		return SQLite
	}
	return DialectAuto
}

// Name returns the outbox name.
func (o *Outbox) Name() string { return o.cfg.Name }

// Dialect returns the SQL dialect of the outbox database.
func (o *Outbox) Dialect() Dialect { return o.cfg.Dialect }

// Table returns the (unquoted) name of the outbox table, "watermill_" +
// Name. A stock Watermill forwarder with watermill-sql's default schema and
// ForwarderTopic Name reads the same table.
func (o *Outbox) Table() string { return "watermill_" + o.cfg.Name }

// Setup creates the outbox tables, indexes and (PostgreSQL) the trigger that
// notifies relays, if they do not exist. It is idempotent and safe to run
// concurrently from several instances: PostgreSQL and MySQL serialize it
// with a lock, SQLite with its single writer. On SQLite it also turns on WAL.
func (o *Outbox) Setup(ctx context.Context) error {
	var err error
	switch o.cfg.Dialect {
	case Postgres:
		err = o.db.inTx(ctx, func(q querier) error {
			if _, err := q.exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, "eventkit.setup."+o.cfg.Name); err != nil {
				return err
			}
			return execAll(ctx, q, o.s.setup)
		})
	case MySQL:
		err = o.setupMySQL(ctx)
	case SQLite:
		err = retryBusy(ctx, func() error {
			if _, err := o.db.exec(ctx, `PRAGMA journal_mode=WAL`); err != nil {
				return err
			}
			return o.db.inTx(ctx, func(q querier) error { return execAll(ctx, q, o.s.setup) })
		})
	}
	if err != nil {
		return fmt.Errorf("forwarder: setup outbox %s: %w", o.cfg.Name, err)
	}
	return nil
}

// Drop removes what Setup created: the outbox table, its scheduled table,
// and on PostgreSQL the notify function and its triggers, on SQLite the
// lease table; pending rows go with them. It is for tests and for
// decommissioning an outbox; stop its relays first. It succeeds when there
// is nothing to drop.
func (o *Outbox) Drop(ctx context.Context) error {
	stmts := []string{"DROP TABLE IF EXISTS " + o.sched.table, "DROP TABLE IF EXISTS " + o.s.table}
	switch o.cfg.Dialect {
	case Postgres:
		stmts = append(stmts, `DROP FUNCTION IF EXISTS "watermill_`+o.cfg.Name+`_notify"()`)
	case SQLite:
		stmts = append(stmts, "DROP TABLE IF EXISTS "+o.s.lease)
	}
	for _, q := range stmts {
		if _, err := o.db.exec(ctx, q); err != nil {
			return fmt.Errorf("forwarder: drop outbox %s: %w", o.cfg.Name, err)
		}
	}
	return nil
}

func (o *Outbox) setupMySQL(ctx context.Context) (err error) {
	sess, err := o.db.session(ctx)
	if err != nil {
		return err
	}
	defer func() { sess.close(err != nil) }()
	key := "eventkit.setup." + o.cfg.Name
	var got sql.NullInt64
	if err := scanOne(ctx, sess, []any{&got}, `SELECT GET_LOCK(?, 60)`, key); err != nil {
		return err
	}
	if got.Int64 != 1 {
		return errors.New("timed out waiting for the setup lock")
	}
	err = execAll(ctx, sess, o.s.setup)
	if _, rerr := sess.exec(context.WithoutCancel(ctx), `SELECT RELEASE_LOCK(?)`, key); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

func execAll(ctx context.Context, q querier, stmts []string) error {
	for _, st := range stmts {
		if _, err := q.exec(ctx, st); err != nil {
			return err
		}
	}
	return nil
}

// retryBusy retries fn while SQLite reports the database as locked.
func retryBusy(ctx context.Context, fn func() error) error {
	delay := 5 * time.Millisecond
	for i := 0; ; i++ {
		err := fn()
		if err == nil || !isBusy(err) || i == 20 {
			return err
		}
		if !sleep(ctx, delay) {
			return errors.Join(err, ctx.Err())
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

func isBusy(err error) bool {
	s := err.Error()
	return strings.Contains(s, "SQLITE_BUSY") || strings.Contains(s, "database is locked")
}

// Add encodes events (each a registered T or *T), stamps their envelopes
// from ctx exactly as cqrs.Bus.Publish does, and inserts them into the
// outbox in tx, the caller's open transaction. The events are relayed only
// if tx commits, and always if it does.
//
// DeliverAt(t) or DeliverAfter(d) among the events schedules them: they wait
// in the outbox's scheduled table until due, then the relay publishes them,
// in due order, never earlier, and without holding back the rows behind
// them (a row due tomorrow is neither pending nor lag: see Stats).
//
// It returns ErrNotTransaction (wrapped) for a tx it cannot write in,
// events.ErrNotRegistered (wrapped) for an unregistered event type or the
// error of OutboxConfig.Validate, before writing anything, or the database
// error of the insert; after an error
// the caller should roll tx back.
func (o *Outbox) Add(ctx context.Context, tx Tx, evts ...any) error {
	q, err := txQuerier(tx)
	if err != nil {
		return err
	}
	msgs, topics, err := o.enc.Messages(ctx, evts...)
	if err != nil {
		return fmt.Errorf("forwarder: %w", err)
	}
	return o.insert(ctx, q, msgs, topics)
}

// Bus returns a cqrs.Bus whose Publish writes to the outbox in tx, as Add
// does. Its Publish returns Add's errors.
func (o *Outbox) Bus(tx Tx) *cqrs.Bus {
	bus, err := cqrs.NewBus(txPublisher{o: o, tx: tx}, cqrs.BusConfig{Registry: o.cfg.Registry, Source: o.cfg.Source, Topic: o.cfg.Topic, Validate: o.cfg.Validate})
	if err != nil {
		// Unreachable: the publisher is not nil and the config was validated.
		panic(err)
	}
	return bus
}

func (o *Outbox) insert(ctx context.Context, q querier, msgs []*message.Message, topics []string) (err error) {
	endSpans := o.traceCreate(ctx, msgs, topics) // injects the trace context before wrap
	defer func() { endSpans(err) }()
	msgs, topics, err = o.insertDelayed(ctx, q, msgs, topics)
	if err != nil || len(msgs) == 0 {
		return err
	}
	per := 4
	if o.cfg.Dialect == SQLite {
		per = 5
	}
	now := time.Now().UnixMicro()
	for start := 0; start < len(msgs); start += insertChunk {
		end := min(start+insertChunk, len(msgs))
		args := make([]any, 0, (end-start)*per)
		for i := start; i < end; i++ {
			m := msgs[i]
			if len(m.UUID) > 36 {
				return fmt.Errorf("forwarder: message uuid %q is longer than 36 characters", m.UUID)
			}
			if len(topics[i]) > 255 {
				return fmt.Errorf("forwarder: topic %q is longer than 255 characters", topics[i])
			}
			payload, err := wrap(topics[i], m)
			if err != nil {
				return fmt.Errorf("forwarder: wrap message %s: %w", m.UUID, err)
			}
			args = append(args, m.UUID, string(payload), m.Metadata.Get(events.KeyName), topics[i])
			if o.cfg.Dialect == SQLite {
				args = append(args, now)
			}
		}
		if _, err := q.exec(ctx, o.s.insert(end-start), args...); err != nil {
			return fmt.Errorf("forwarder: insert into outbox %s: %w", o.cfg.Name, err)
		}
	}
	return nil
}

// insertDelayed writes the messages due later into the scheduled table and
// returns the others, in order.
func (o *Outbox) insertDelayed(ctx context.Context, q querier, msgs []*message.Message, topics []string) ([]*message.Message, []string, error) {
	now := time.Now()
	var later []scheduledRow
	var restMsgs []*message.Message
	var restTopics []string
	for i, m := range msgs {
		due, ahead, err := dueOf(m, now)
		if err != nil {
			return nil, nil, err
		}
		if !ahead {
			if later != nil {
				restMsgs, restTopics = append(restMsgs, m), append(restTopics, topics[i])
			}
			continue
		}
		if later == nil {
			restMsgs, restTopics = append(restMsgs, msgs[:i]...), append(restTopics, topics[:i]...)
		}
		if len(m.UUID) > 36 {
			return nil, nil, fmt.Errorf("forwarder: message uuid %q is longer than 36 characters", m.UUID)
		}
		payload, err := wrap(topics[i], m)
		if err != nil {
			return nil, nil, fmt.Errorf("forwarder: wrap message %s: %w", m.UUID, err)
		}
		later = append(later, scheduledRow{uuid: m.UUID, payload: string(payload), name: m.Metadata.Get(events.KeyName), topic: topics[i], due: due})
	}
	if later == nil {
		return msgs, topics, nil
	}
	return restMsgs, restTopics, o.insertScheduled(ctx, q, later)
}

// txPublisher is the message.Publisher behind Bus(tx).
type txPublisher struct {
	o  *Outbox
	tx Tx
}

func (p txPublisher) Publish(topic string, msgs ...*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	q, err := txQuerier(p.tx)
	if err != nil {
		return err
	}
	ctx := msgs[0].Context()
	topics := make([]string, len(msgs))
	for i := range topics {
		topics[i] = topic
	}
	return p.o.insert(ctx, q, msgs, topics)
}

func (txPublisher) Close() error { return nil }

// SchedulesDelivery reports that Bus(tx) schedules (cqrs.Scheduler).
func (txPublisher) SchedulesDelivery() bool { return true }

type discardPublisher struct{}

func (discardPublisher) Publish(string, ...*message.Message) error { return nil }
func (discardPublisher) Close() error                              { return nil }

// scanOne runs a query expected to return one row and scans it.
func scanOne(ctx context.Context, q querier, dest []any, query string, args ...any) error {
	rs, err := q.query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rs.Close()
	if !rs.Next() {
		if err := rs.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	if err := rs.Scan(dest...); err != nil {
		return err
	}
	rs.Close()
	return rs.Err()
}

// sleep waits for d or ctx; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
