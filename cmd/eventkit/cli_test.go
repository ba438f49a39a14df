package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	wmforwarder "github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/dburl"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// eventkit runs the command in-process and returns its exit code and output.
func eventkit(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "missing command"},
		{[]string{"frobnicate"}, exitUsage, "unknown command"},
		{[]string{"outbox"}, exitUsage, "missing subcommand"},
		{[]string{"outbox", "explode"}, exitUsage, "unknown command"},
		{[]string{"outbox", "stats", "--nope"}, exitUsage, "flag provided but not defined"},
		{[]string{"outbox", "stats", "--db", ""}, exitUsage, "--db is required"},
		{[]string{"outbox", "purge", "--db", "sqlite:x.db"}, exitUsage, "--older-than"},
		{[]string{"outbox", "requeue", "--db", "sqlite:x.db"}, exitUsage, "event ids"},
		{[]string{"outbox", "stats", "--db", "oracle://u:hunter22@h/db"}, exitUsage, "--db"},
		{[]string{"outbox", "stats", "--db", "sqlite:x.db", "--outbox", "x; DROP TABLE y"}, exitUsage, "Name"},
		{[]string{"outbox", "adopt", "--db", ""}, exitUsage, "--db is required"},
		{[]string{"outbox", "adopt", "--db", "sqlite:x.db", "stray"}, exitUsage, "unexpected argument"},
		{[]string{"outbox", "handover", "--db", "sqlite:x.db", "--forwarder"}, exitUsage, "flag provided but not defined"},
		{[]string{"dlq", "list", "--transport", "mem://"}, exitUsage, "--topic is required"},
		{[]string{"dlq", "replay", "--topic", "t.dlq", "--transport", ""}, exitUsage, "--transport is required"},
		{[]string{"help"}, exitOK, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := eventkit(t, tt.args...)
			assert.Equal(t, tt.code, code, "stdout %q stderr %q", out, errOut)
			assert.Contains(t, errOut, tt.want)
			assert.NotContains(t, errOut+out, "hunter22")
		})
	}
}

func TestBrokenDatabaseExitsOneWithoutPassword(t *testing.T) {
	t.Parallel()
	code, _, errOut := eventkit(t, "outbox", "stats", "--db", "postgres://user:hunter22@127.0.0.1:1/test?connect_timeout=2")
	assert.Equal(t, exitError, code)
	assert.NotContains(t, errOut, "hunter22")
	assert.Contains(t, errOut, "connect")
}

type event struct {
	N int `json:"n"`
}

// rejecting publishes everything but the message whose payload is reject,
// which the broker "refuses" (an error that is not an outage).
type rejecting struct {
	message.Publisher
	reject string
}

func (p rejecting) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		if string(m.Payload) == p.reject {
			return errors.New("broker refused the message: 312 NO_ROUTE")
		}
	}
	return p.Publisher.Publish(topic, msgs...)
}

type nopPublisher struct{}

func (nopPublisher) Publish(string, ...*message.Message) error { return nil }
func (nopPublisher) Close() error                              { return nil }

// relayUntil runs a relay over ob with pub until cond holds.
func relayUntil(t *testing.T, ob *forwarder.Outbox, pub message.Publisher, cond func(forwarder.Stats) bool) {
	t.Helper()
	relay, err := forwarder.NewRelay(ob, pub, forwarder.RelayConfig{MaxAttempts: 1, RetryInterval: 10 * time.Millisecond, MinPollInterval: 10 * time.Millisecond, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = relay.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	require.Eventually(t, func() bool {
		s, err := ob.Stats(context.Background())
		return err == nil && cond(s)
	}, 20*time.Second, 20*time.Millisecond)
}

func postgres(t *testing.T) (*sql.DB, string) {
	t.Helper()
	url := testenv.PostgresURL()
	db, err := dburl.Open(url)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		testenv.Unavailable(t, "PostgreSQL", err)
	}
	return db, url
}

// The operator's path on a real outbox: migrate, stats shows the failed row,
// failed lists it with its error, requeue fixes it, the relay delivers it.
func TestOutboxCommandsOnPostgres(t *testing.T) {
	t.Parallel()
	db, url := postgres(t)
	name := testenv.Name(t, "cli")
	inbox := name + "_inbox"
	dropOutbox(t, db, name, `"`+inbox+`"`)

	code, out, errOut := eventkit(t, "migrate", "--db", url, "--outbox", name, "--inbox", inbox)
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "watermill_"+name)

	reg := events.NewRegistry()
	require.NoError(t, events.Register[event](reg, "cli.event"))
	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Name: name})
	require.NoError(t, err)
	tx, err := db.Begin()
	require.NoError(t, err)
	require.NoError(t, ob.Add(context.Background(), tx, event{N: 1}, event{N: 2}))
	require.NoError(t, tx.Commit())

	relayUntil(t, ob, rejecting{Publisher: nopPublisher{}, reject: `{"n":1}`}, func(s forwarder.Stats) bool { return s.Failed == 1 && s.Published == 1 })

	code, out, errOut = eventkit(t, "outbox", "stats", "--db", url, "--outbox", name, "--json")
	require.Equal(t, exitOK, code, errOut)
	var stats map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &stats))
	assert.EqualValues(t, 1, stats["failed"])
	assert.EqualValues(t, 1, stats["published"])
	assert.EqualValues(t, 0, stats["pending"])

	code, out, _ = eventkit(t, "outbox", "stats", "--db", url, "--outbox", name)
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "FAILED")

	code, out, errOut = eventkit(t, "outbox", "failed", "--db", url, "--outbox", name, "--json")
	require.Equal(t, exitOK, code, errOut)
	var failed []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &failed))
	require.Len(t, failed, 1)
	assert.Contains(t, failed[0]["last_error"], "NO_ROUTE")
	assert.EqualValues(t, 1, failed[0]["attempts"])
	assert.Equal(t, "cli.event", failed[0]["name"])
	id := failed[0]["event_id"].(string)

	code, out, errOut = eventkit(t, "outbox", "requeue", id, "--db", url, "--outbox", name)
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "requeued 1")

	code, out, _ = eventkit(t, "outbox", "pending", "--db", url, "--outbox", name)
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, id)

	relayUntil(t, ob, nopPublisher{}, func(s forwarder.Stats) bool { return s.Published == 2 && s.Failed == 0 && s.Pending == 0 })

	code, out, errOut = eventkit(t, "outbox", "purge", "--db", url, "--outbox", name, "--older-than", "1h", "--json")
	require.Equal(t, exitOK, code, errOut)
	assert.JSONEq(t, `{"purged":0}`, out)

	// A row scheduled for tomorrow: scheduled, not pending, and listed.
	tx, err = db.Begin()
	require.NoError(t, err)
	due := time.Now().Add(24 * time.Hour)
	require.NoError(t, ob.Add(context.Background(), tx, event{N: 3}, forwarder.DeliverAt(due)))
	require.NoError(t, tx.Commit())
	code, out, errOut = eventkit(t, "outbox", "stats", "--db", url, "--outbox", name, "--json")
	require.Equal(t, exitOK, code, errOut)
	stats = nil
	require.NoError(t, json.Unmarshal([]byte(out), &stats))
	assert.EqualValues(t, 1, stats["scheduled"])
	assert.EqualValues(t, 0, stats["pending"])
	assert.EqualValues(t, 0, stats["oldest_pending_age_seconds"], "a row due tomorrow is no lag")
	assert.Equal(t, due.UTC().Format(time.RFC3339), stats["next_due_at"])
	code, out, errOut = eventkit(t, "outbox", "scheduled", "--db", url, "--outbox", name)
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "cli.event")
	assert.Contains(t, out, due.UTC().Format(time.RFC3339))
	code, out, _ = eventkit(t, "outbox", "stats", "--db", url, "--outbox", name)
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "SCHEDULED")
}

// The move from a stock Watermill forwarder: it drained 3 events and was
// stopped, 2 more were written; "outbox adopt" marks the 3 published and
// says 2 remain, a second run marks none, "outbox handover" goes back.
func TestOutboxAdoptOnPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, url := postgres(t)
	name := testenv.Name(t, "cli")
	dropOutbox(t, db, name, `"watermill_offsets_`+name+`"`)
	code, _, errOut := eventkit(t, "migrate", "--db", url, "--outbox", name)
	require.Equal(t, exitOK, code, errOut)
	reg := events.NewRegistry()
	require.NoError(t, events.Register[event](reg, "cli.event"))
	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Name: name})
	require.NoError(t, err)
	add := func(evts ...any) {
		tx, err := db.Begin()
		require.NoError(t, err)
		require.NoError(t, ob.Add(ctx, tx, evts...))
		require.NoError(t, tx.Commit())
	}

	code, _, errOut = eventkit(t, "outbox", "adopt", "--db", url, "--outbox", name)
	require.Equal(t, exitError, code)
	assert.Contains(t, errOut, "watermill_offsets_"+name+" does not exist, so no stock Watermill forwarder has run")

	add(event{N: 1}, event{N: 2}, event{N: 3})
	var sent atomic.Int64
	runStockForwarderUntilIdle(t, db, name, countingPublisher{&sent})
	require.Equal(t, int64(3), sent.Load())
	add(event{N: 4}, event{N: 5})

	code, out, errOut := eventkit(t, "outbox", "adopt", "--db", url, "--outbox", name)
	require.Equal(t, exitOK, code, errOut)
	assert.Equal(t, `outbox `+name+`: marked 3 row(s) the stock forwarder (consumer group "") had published as published; 2 pending remain`+"\n", out)

	code, out, errOut = eventkit(t, "outbox", "adopt", "--db", url, "--outbox", name, "--json")
	require.Equal(t, exitOK, code, errOut)
	assert.JSONEq(t, `{"outbox":"`+name+`","forwarder_group":"","marked_published":0,"pending":2,"failed":0}`, out)

	code, _, errOut = eventkit(t, "outbox", "adopt", "--db", url, "--outbox", name, "--forwarder-group", "billing")
	require.Equal(t, exitError, code)
	assert.Contains(t, errOut, `consumer group "billing" has no row in table watermill_offsets_`+name+`; groups found: ""`)

	code, out, errOut = eventkit(t, "outbox", "handover", "--db", url, "--outbox", name, "--json")
	require.Equal(t, exitOK, code, errOut)
	assert.JSONEq(t, `{"outbox":"`+name+`","forwarder_group":"","resent":0,"pending":2,"failed":0}`, out)
	runStockForwarderUntilIdle(t, db, name, countingPublisher{&sent})
	require.Equal(t, int64(5), sent.Load(), "the stock forwarder went on with the 2 pending events only")

	code, _, errOut = eventkit(t, "outbox", "adopt", "--db", "sqlite:"+filepath.Join(t.TempDir(), "x.db"))
	require.Equal(t, exitError, code)
	assert.Contains(t, errOut, "SQLite")
}

// dropOutbox drops the PostgreSQL outbox (its table, then its trigger
// function) and the other (quoted) tables when the test ends.
func dropOutbox(t *testing.T, db *sql.DB, outbox string, tables ...string) {
	t.Cleanup(func() {
		stmts := []string{`DROP TABLE IF EXISTS "watermill_` + outbox + `_scheduled"`, `DROP TABLE IF EXISTS "watermill_` + outbox + `"`,
			`DROP FUNCTION IF EXISTS "watermill_` + outbox + `_notify"()`}
		for _, tbl := range tables {
			stmts = append(stmts, `DROP TABLE IF EXISTS `+tbl)
		}
		for _, q := range stmts {
			_, err := db.Exec(q)
			assert.NoError(t, err)
		}
	})
}

// runStockForwarderUntilIdle runs a stock Watermill forwarder (consumer
// group "") on the outbox until it has acknowledged the last row.
func runStockForwarderUntilIdle(t *testing.T, db *sql.DB, outbox string, pub message.Publisher) {
	t.Helper()
	logger := watermill.NopLogger{}
	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(db), wmsql.SubscriberConfig{
		SchemaAdapter:    wmsql.DefaultPostgreSQLSchema{},
		OffsetsAdapter:   wmsql.DefaultPostgreSQLOffsetsAdapter{},
		InitializeSchema: true,
		PollInterval:     10 * time.Millisecond,
	}, logger)
	require.NoError(t, err)
	defer sub.Close()
	fwd, err := wmforwarder.NewForwarder(sub, pub, logger, wmforwarder.Config{ForwarderTopic: outbox})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fwd.Run(ctx) }()
	defer func() { cancel(); _ = fwd.Close(); <-done }()
	require.Eventually(t, func() bool {
		var idle bool
		err := db.QueryRow(`SELECT COALESCE((SELECT offset_acked FROM "watermill_offsets_` + outbox + `" WHERE consumer_group = ''), -1)
			= (SELECT MAX("offset") FROM "watermill_` + outbox + `")`).Scan(&idle)
		return err == nil && idle
	}, 20*time.Second, 10*time.Millisecond, "the stock forwarder did not acknowledge the last row")
}

type countingPublisher struct{ n *atomic.Int64 }

func (p countingPublisher) Publish(_ string, msgs ...*message.Message) error {
	p.n.Add(int64(len(msgs)))
	return nil
}
func (countingPublisher) Close() error { return nil }

// A dead letter made by the Default chain over RabbitMQ is listed by
// "dlq list" and re-delivered by "dlq replay" with its event id.
func TestDLQCommandsOnRabbitMQ(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.AMQPURL()
	tr, err := transports.Open(ctx, url)
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ", err)
	}
	defer tr.Close()
	topic := testenv.Name(t, "cli")
	handler := topic + "_h"

	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	inbox, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
	require.NoError(t, err)
	chain, err := middleware.Default(middleware.DefaultConfig{Publisher: tr.Publisher(), Inbox: inbox, Subscribers: tr.Subscriber,
		Logger: quietLogger()})
	require.NoError(t, err)
	router.AddMiddleware(chain.Middlewares()...)
	sub, err := tr.Subscriber(handler)
	require.NoError(t, err)
	router.AddConsumerHandler(handler, topic, sub, func(*message.Message) error {
		return middleware.Permanent(errors.New("cannot handle this"))
	})
	go func() { _ = router.Run(ctx) }()
	<-router.Running()

	msg := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	msg.Metadata.Set(events.KeyName, "cli.event")
	msg.Metadata.Set(events.KeyEventID, msg.UUID)
	require.NoError(t, tr.Publisher().Publish(topic, msg))
	require.Eventually(t, func() bool { return chain.DeadLettered() == 1 }, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, router.Close())

	dlq := middleware.DeadLetterTopic(topic)
	code, out, errOut := eventkit(t, "dlq", "list", "--transport", url, "--topic", dlq, "--idle", "500ms", "--json")
	require.Equal(t, exitOK, code, errOut)
	var dead []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &dead))
	require.Len(t, dead, 1)
	assert.Equal(t, msg.UUID, dead[0]["event_id"])
	assert.Equal(t, "permanent", dead[0]["reason"])
	assert.Equal(t, handler, dead[0]["handler"])
	assert.EqualValues(t, 0, dead[0]["delayed_attempts"], "a permanent error skips the delayed rounds")
	code, out, errOut = eventkit(t, "dlq", "list", "--transport", url, "--topic", dlq, "--idle", "500ms")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "DELAYED")

	code, out, errOut = eventkit(t, "dlq", "replay", "--transport", url, "--topic", dlq, "--handler", handler, "--idle", "500ms")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "replayed 1")

	again, err := tr.Subscriber(handler)
	require.NoError(t, err)
	defer again.Close()
	ch, err := again.Subscribe(ctx, topic)
	require.NoError(t, err)
	select {
	case m := <-ch:
		m.Ack()
		assert.Equal(t, msg.UUID, m.UUID)
		assert.Equal(t, msg.UUID, m.Metadata.Get(events.KeyEventID))
		assert.Empty(t, m.Metadata.Get(middleware.KeyReason))
	case <-time.After(20 * time.Second):
		t.Fatal("replayed dead letter not delivered")
	}
}
