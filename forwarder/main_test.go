package forwarder_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/lib/pq"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	_ "github.com/b2131a45/eventkit/internal/dburl/sqlitedriver"
	"github.com/b2131a45/eventkit/internal/testenv"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		// Re-executed as the relay that TestRelayKilledMidBatch kills.
		os.Exit(runChildRelay())
	}
	testenv.Main(m,
		// database/sql keeps one opener goroutine per *sql.DB until Close;
		// tests close theirs in Cleanup, which runs before this check.
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
	)
}

// ---- events ----------------------------------------------------------------

type OrderCreated struct {
	ID  string `json:"id"`
	Seq int    `json:"seq"`
}

func (o OrderCreated) PartitionKey() string { return o.ID }

type OrderShipped struct {
	ID string `json:"id"`
}

func newRegistry(t testing.TB) *events.Registry {
	reg := events.NewRegistry()
	require.NoError(t, events.Register[OrderCreated](reg, "test.order_created"))
	require.NoError(t, events.Register[OrderShipped](reg, "test.order_shipped"))
	return reg
}

// ---- databases -------------------------------------------------------------

// backend is one way of storing an outbox.
type backend string

const (
	pgStd  backend = "postgres" // database/sql with the pgx driver
	pgPool backend = "pgx"      // pgxpool
	mysqlB backend = "mysql"    // MariaDB
	sqlite backend = "sqlite"   // modernc.org/sqlite
	pgPq   backend = "pq"       // database/sql with lib/pq: no LISTEN, polled
)

var allBackends = []backend{pgStd, pgPool, mysqlB, sqlite}

// env is a test's outbox and the database behind it.
type env struct {
	t       testing.TB
	backend backend
	name    string
	db      *sql.DB       // nil for pgPool
	pool    *pgxpool.Pool // pgPool only
	ob      *forwarder.Outbox
	reg     *events.Registry
}

func mysqlDSN() string {
	u, err := url.Parse(testenv.MySQLURL())
	if err != nil {
		panic(err)
	}
	pass, _ := u.User.Password()
	auth := u.User.Username()
	if pass != "" {
		auth += ":" + pass
	}
	return auth + "@tcp(" + u.Host + ")" + u.Path
}

func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(10000)&_txlock=immediate"
}

// openDB opens the database of a backend, or skips/fails when it is down.
func openDB(t testing.TB, b backend) (*sql.DB, *pgxpool.Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	switch b {
	case pgPool:
		pool, err := pgxpool.New(ctx, testenv.PostgresURL())
		if err == nil {
			err = pool.Ping(ctx)
		}
		if err != nil {
			if pool != nil {
				pool.Close()
			}
			testenv.Unavailable(t, "PostgreSQL", err)
		}
		t.Cleanup(pool.Close)
		return nil, pool
	case sqlite:
		db, err := sql.Open("sqlite", sqliteDSN(filepath.Join(t.TempDir(), "outbox.db")))
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		return db, nil
	}
	driver, dsn, service := "pgx", testenv.PostgresURL(), "PostgreSQL"
	switch b {
	case mysqlB:
		driver, dsn, service = "mysql", mysqlDSN(), "MariaDB"
	case pgPq:
		driver = "postgres"
	}
	db, err := sql.Open(driver, dsn)
	require.NoError(t, err)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		testenv.Unavailable(t, service, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, nil
}

// newEnv returns a fresh outbox (its own name, so tests run in parallel)
// on backend b, set up.
func newEnv(t testing.TB, b backend, mod ...func(*forwarder.OutboxConfig)) *env {
	t.Helper()
	e := &env{t: t, backend: b, name: testenv.Name(t, "ob"), reg: newRegistry(t)}
	if len(e.name) > 40 {
		e.name = e.name[len(e.name)-40:]
	}
	e.db, e.pool = openDB(t, b)
	cfg := forwarder.OutboxConfig{Registry: e.reg, Name: e.name, Source: "tests", Logger: testLogger(t)}
	for _, m := range mod {
		m(&cfg)
	}
	var err error
	if e.pool != nil {
		e.ob, err = forwarder.NewOutboxPgx(e.pool, cfg)
	} else {
		e.ob, err = forwarder.NewOutbox(e.db, cfg)
	}
	require.NoError(t, err)
	require.NoError(t, e.ob.Setup(context.Background()))
	t.Cleanup(func() { e.drop() })
	return e
}

func (e *env) drop() {
	ctx := context.Background()
	if e.backend == sqlite {
		return // t.TempDir goes away
	}
	_ = e.ob.Drop(ctx)
	offsets := `DROP TABLE IF EXISTS "watermill_offsets_` + e.name + `"`
	if e.backend == mysqlB {
		offsets = "DROP TABLE IF EXISTS `watermill_offsets_" + e.name + "`"
	}
	_ = e.exec(ctx, offsets)
}

func (e *env) exec(ctx context.Context, q string, args ...any) error {
	if e.pool != nil {
		_, err := e.pool.Exec(ctx, q, args...)
		return err
	}
	_, err := e.db.ExecContext(ctx, q, args...)
	return err
}

// tx is an open transaction of the env's database.
type tx struct {
	raw      forwarder.Tx
	commit   func() error
	rollback func() error
}

func (e *env) begin(ctx context.Context) tx {
	e.t.Helper()
	if e.pool != nil {
		ptx, err := e.pool.Begin(ctx)
		require.NoError(e.t, err)
		return tx{raw: ptx, commit: func() error { return ptx.Commit(ctx) }, rollback: func() error { return ptx.Rollback(ctx) }}
	}
	stx, err := e.db.BeginTx(ctx, nil)
	require.NoError(e.t, err)
	return tx{raw: stx, commit: stx.Commit, rollback: stx.Rollback}
}

// add commits one transaction adding evts.
func (e *env) add(evts ...any) {
	e.t.Helper()
	ctx := context.Background()
	tx := e.begin(ctx)
	require.NoError(e.t, e.ob.Add(ctx, tx.raw, evts...))
	require.NoError(e.t, tx.commit())
}

// orders returns n OrderCreated events with Seq from..from+n-1.
func orders(from, n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = OrderCreated{ID: fmt.Sprintf("o-%d", (from+i)%7), Seq: from + i}
	}
	return out
}

func (e *env) stats() forwarder.Stats {
	e.t.Helper()
	st, err := e.ob.Stats(context.Background())
	require.NoError(e.t, err)
	return st
}

// testLogger sends logs to t.Log, shown for failed tests and with -v.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// ---- relays ----------------------------------------------------------------

// fastRelay is a RelayConfig with short waits, for tests.
func fastRelay() forwarder.RelayConfig {
	return forwarder.RelayConfig{
		BatchSize:        100,
		MaxAttempts:      3,
		PollInterval:     200 * time.Millisecond,
		MinPollInterval:  5 * time.Millisecond,
		RetryInterval:    10 * time.Millisecond,
		MaxBackoff:       100 * time.Millisecond,
		TakeoverInterval: 50 * time.Millisecond,
		LeaseTTL:         time.Second,
		StopTimeout:      2 * time.Second,
	}
}

// running is a relay started by start; stop ends it and returns Run's error.
type running struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func (r *running) stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
	return r.err
}

func (e *env) start(pub message.Publisher, cfg forwarder.RelayConfig) *running {
	e.t.Helper()
	relay, err := forwarder.NewRelay(e.ob, pub, cfg)
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- relay.Run(ctx) }()
	e.t.Cleanup(func() { _ = r.stop() })
	return r
}

// ---- a broker in memory ----------------------------------------------------

type published struct {
	topic string
	msg   *message.Message
}

// memBroker is a message.Publisher that records what it confirms. fail,
// when set, decides per message: nil confirms it.
type memBroker struct {
	mu    sync.Mutex
	got   []published
	calls int
	fail  func(topic string, m *message.Message) error
	// batchErrors makes Publish report failures with NotConfirmed, as
	// eventkit transports do; otherwise it stops at the first failure
	// with a plain error, as stock Watermill publishers do.
	batchErrors bool
}

func (b *memBroker) setFail(f func(topic string, m *message.Message) error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fail = f
}

func (b *memBroker) Publish(topic string, msgs ...*message.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	var failed []string
	var firstErr error
	for _, m := range msgs {
		var err error
		if b.fail != nil {
			err = b.fail(topic, m)
		}
		if err != nil {
			if !b.batchErrors {
				return err
			}
			failed = append(failed, m.UUID)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		b.got = append(b.got, published{topic, m.Copy()})
	}
	if len(failed) > 0 {
		return &notConfirmedErr{uuids: failed, err: firstErr}
	}
	return nil
}

func (b *memBroker) Close() error { return nil }

func (b *memBroker) messages() []published {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.got)
}

// seqs returns the Seq of every OrderCreated received, in order.
func (b *memBroker) seqs(t testing.TB) []int {
	t.Helper()
	var out []int
	for _, p := range b.messages() {
		if p.msg.Metadata.Get(events.KeyName) != "test.order_created" {
			continue
		}
		out = append(out, decodeSeq(t, p.msg))
	}
	return out
}

func decodeSeq(t testing.TB, m *message.Message) int {
	t.Helper()
	reg := newRegistry(t)
	_, v, err := reg.Decode(m)
	require.NoError(t, err)
	return v.(*OrderCreated).Seq
}

// waitCount waits until the broker confirmed n messages.
func (b *memBroker) waitCount(t testing.TB, n int, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { return len(b.messages()) >= n }, within, 5*time.Millisecond,
		"broker got %d of %d messages", len(b.messages()), n)
}

// notConfirmedErr mimics the PublishError of eventkit transports.
type notConfirmedErr struct {
	uuids []string
	err   error
}

func (e *notConfirmedErr) Error() string {
	return fmt.Sprintf("%d message(s) not confirmed: %v", len(e.uuids), e.err)
}
func (e *notConfirmedErr) Unwrap() error          { return e.err }
func (e *notConfirmedErr) NotConfirmed() []string { return e.uuids }

// unavailableErr is an outage or back-pressure error.
type unavailableErr struct{ msg string }

func (e unavailableErr) Error() string     { return e.msg }
func (e unavailableErr) Unavailable() bool { return true }

// rejectedErr is a broker refusing one message.
type rejectedErr struct{ msg string }

func (e rejectedErr) Error() string     { return e.msg }
func (e rejectedErr) Unavailable() bool { return false }

var errPlain = errors.New("broker said no")

// seqRange returns from..to-1.
func seqRange(from, to int) []int {
	out := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}
