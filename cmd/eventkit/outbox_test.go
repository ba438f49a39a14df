package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
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

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/testenv"
)

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

// outboxWithRows migrates an outbox named after the test in d (dropped when
// the test ends) and fills it: one failed row ({"n":1}), one published, one
// pending and one scheduled for tomorrow.
func outboxWithRows(t *testing.T, d database) (*forwarder.Outbox, time.Time) {
	t.Helper()
	ctx := context.Background()
	name := testenv.Name(t, "cli")
	dropOutbox(t, d, name)
	code, _, errOut := eventkit(t, "migrate", "--db", d.url, "--outbox", name)
	require.Equal(t, exitOK, code, errOut)
	reg := events.NewRegistry()
	require.NoError(t, events.Register[event](reg, "cli.event"))
	ob, err := forwarder.NewOutbox(d.db, forwarder.OutboxConfig{Registry: reg, Name: name})
	require.NoError(t, err)
	add := func(evts ...any) {
		tx, err := d.db.Begin()
		require.NoError(t, err)
		require.NoError(t, ob.Add(ctx, tx, evts...))
		require.NoError(t, tx.Commit())
	}
	add(event{N: 1}, event{N: 2})
	relayUntil(t, ob, rejecting{Publisher: nopPublisher{}, reject: `{"n":1}`}, func(s forwarder.Stats) bool { return s.Failed == 1 && s.Published == 1 })
	due := time.Now().Add(24 * time.Hour)
	add(event{N: 3})
	add(event{N: 4}, forwarder.DeliverAt(due))
	return ob, due
}

// The operator's path on a real outbox, on each database: migrate says
// what it created, stats shows the failed row, failed lists it with its
// error, requeue says how many rows it moved (1 of the ids given, then 0),
// the relay delivers it, purge and scheduled say what they found.
func TestOutboxCommands(t *testing.T) {
	t.Parallel()
	for _, dbs := range databases {
		t.Run(dbs.name, func(t *testing.T) {
			t.Parallel()
			d := dbs.open(t)
			db, url := d.db, d.url
			name := testenv.Name(t, "cli")
			inbox := name + "_inbox"
			dropOutbox(t, d, name, inbox)

			tables := "watermill_" + name + ", watermill_" + name + "_scheduled"
			if d.dialect == forwarder.SQLite {
				tables += ", watermill_" + name + "_lease"
			}
			code, out, errOut := eventkit(t, "migrate", "--db", url, "--outbox", name, "--inbox", inbox)
			require.Equal(t, exitOK, code, errOut)
			n := strings.Count(tables, ",") + 1
			assert.Equal(t, "outbox "+name+": created "+strconv.Itoa(n)+" table(s): "+tables+"\ninbox "+inbox+": created 1 table(s): "+inbox+"\n", out)
			code, out, errOut = eventkit(t, "migrate", "--db", url, "--outbox", name, "--inbox", inbox)
			require.Equal(t, exitOK, code, errOut)
			assert.Equal(t, "outbox "+name+": table(s) "+tables+" already exist; nothing created\ninbox "+inbox+": table(s) "+inbox+" already exist; nothing created\n", out)

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
			code, out, _ = eventkit(t, "outbox", "failed", "--db", url, "--outbox", name, "--limit", "1")
			require.Equal(t, exitOK, code)
			assert.Contains(t, out, id)
			assert.Contains(t, out, "1 failed row(s) shown: --limit 1 reached")

			// The real count: one failed row among the ids, an unknown id,
			// a repeated id; then nothing left to requeue.
			code, out, errOut = eventkit(t, "outbox", "requeue", id, "no-such-event", id, "--db", url, "--outbox", name)
			require.Equal(t, exitOK, code, errOut)
			assert.Equal(t, "outbox "+name+": requeued 1 failed event(s) of the 2 id(s) given; "+
				"1 were not failed rows (pending, published or unknown) and were left unchanged\n", out)
			code, out, errOut = eventkit(t, "outbox", "requeue", id, "--db", url, "--outbox", name, "--json")
			require.Equal(t, exitOK, code, errOut)
			assert.JSONEq(t, `{"outbox":"`+name+`","requeued":0,"ids":1}`, out)

			code, out, _ = eventkit(t, "outbox", "pending", "--db", url, "--outbox", name)
			require.Equal(t, exitOK, code)
			assert.Contains(t, out, id)
			assert.Contains(t, out, "\n1 pending row(s)\n")

			relayUntil(t, ob, nopPublisher{}, func(s forwarder.Stats) bool { return s.Published == 2 && s.Failed == 0 && s.Pending == 0 })

			code, out, errOut = eventkit(t, "outbox", "purge", "--db", url, "--outbox", name, "--older-than", "1h", "--json")
			require.Equal(t, exitOK, code, errOut)
			assert.JSONEq(t, `{"purged":0}`, out)
			code, out, errOut = eventkit(t, "outbox", "purge", "--db", url, "--outbox", name, "--older-than", "1h")
			require.Equal(t, exitOK, code, errOut)
			assert.Equal(t, "purged 0 published row(s) older than 1h0m0s\n", out)

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
			assert.Contains(t, out, "\n1 scheduled row(s)\n")
			code, out, _ = eventkit(t, "outbox", "stats", "--db", url, "--outbox", name)
			require.Equal(t, exitOK, code)
			assert.Contains(t, out, "SCHEDULED")
		})
	}
}

// stats, pending, failed and scheduled change nothing, on each database:
// the rows and the tables are the same after every one of them, in text
// and in JSON; on a mistyped outbox name they fail and create no table.
func TestReadingCommandsChangeNothing(t *testing.T) {
	t.Parallel()
	for _, dbs := range databases {
		t.Run(dbs.name, func(t *testing.T) {
			t.Parallel()
			d := dbs.open(t)
			ob, _ := outboxWithRows(t, d)
			name := ob.Name()
			// Every table of the test's outbox, with every row.
			snapshot := func() []string {
				var s []string
				for _, tbl := range tablesLike(t, d, name) {
					s = append(s, "table "+tbl)
					s = append(s, dump(t, d, tbl)...)
				}
				return s
			}
			before := snapshot()
			require.Len(t, dump(t, d, ob.Table()), 3, "failed, published, pending")
			require.Len(t, dump(t, d, ob.Table()+"_scheduled"), 1)

			for _, cmd := range []string{"stats", "pending", "failed", "scheduled"} {
				for _, extra := range [][]string{nil, {"--json"}} {
					code, out, errOut := eventkit(t, append([]string{"outbox", cmd, "--db", d.url, "--outbox", name}, extra...)...)
					require.Equal(t, exitOK, code, errOut)
					require.NotEmpty(t, out)
					require.Equal(t, before, snapshot(), "outbox %s %v changed something", cmd, extra)
				}
				typo := "typo" + name[len(name)-9:] // "typo_<the name's random hex>"
				code, _, errOut := eventkit(t, "outbox", cmd, "--db", d.url, "--outbox", typo)
				require.Equal(t, exitError, code, errOut)
				assert.Contains(t, errOut, "outbox "+typo+": table watermill_"+typo+" does not exist in this database; nothing was changed")
				assert.Empty(t, tablesLike(t, d, typo), "a reading command created a table")
			}
			// The writing commands refuse a mistyped outbox too, creating nothing.
			typo := "typo" + name[len(name)-9:] // "typo_<the name's random hex>"
			for _, args := range [][]string{{"requeue", "x"}, {"purge", "--older-than", "1h"}, {"adopt"}, {"handover"}} {
				code, _, errOut := eventkit(t, append([]string{"outbox"}, append(args, "--db", d.url, "--outbox", typo)...)...)
				require.Equal(t, exitError, code)
				assert.Contains(t, errOut, "does not exist in this database")
			}
			assert.Empty(t, tablesLike(t, d, typo))
			require.Equal(t, before, snapshot())
		})
	}
}

// On SQLite the reading commands open the file read-only: they leave a
// database in rollback-journal mode as it is (the connection settings of
// the other commands would turn it to WAL), and the writing ones still
// work on it.
func TestReadingCommandsOpenSQLiteReadOnly(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ro.db")
	url := "sqlite:" + path
	code, _, errOut := eventkit(t, "migrate", "--db", url)
	require.Equal(t, exitOK, code, errOut)
	journal := func(set string) string {
		t.Helper()
		db, err := sql.Open("sqlite", "file:"+path)
		require.NoError(t, err)
		defer db.Close()
		var mode string
		if set != "" {
			require.NoError(t, db.QueryRow("PRAGMA journal_mode="+set).Scan(&mode))
		}
		require.NoError(t, db.QueryRow("PRAGMA journal_mode").Scan(&mode))
		return mode
	}
	require.Equal(t, "delete", journal("DELETE"))
	for _, cmd := range []string{"stats", "pending", "failed", "scheduled"} {
		code, out, errOut := eventkit(t, "outbox", cmd, "--db", url)
		require.Equal(t, exitOK, code, errOut)
		require.NotEmpty(t, out)
		require.Equal(t, "delete", journal(""), "outbox %s changed the database", cmd)
	}
	code, out, errOut := eventkit(t, "outbox", "purge", "--db", url, "--older-than", "1h")
	require.Equal(t, exitOK, code, errOut)
	assert.Equal(t, "purged 0 published row(s) older than 1h0m0s\n", out)
}

// The move from a stock Watermill forwarder: it drained 3 events and was
// stopped, 2 more were written; "outbox adopt" marks the 3 published and
// says 2 remain, a second run marks none, "outbox handover" goes back.
func TestOutboxAdoptOnPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := databases[0].open(t)
	db, url := d.db, d.url
	name := testenv.Name(t, "cli")
	dropOutbox(t, d, name, "watermill_offsets_"+name)
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

	sqlite := "sqlite:" + filepath.Join(t.TempDir(), "x.db")
	code, _, errOut = eventkit(t, "migrate", "--db", sqlite)
	require.Equal(t, exitOK, code, errOut)
	code, _, errOut = eventkit(t, "outbox", "adopt", "--db", sqlite)
	require.Equal(t, exitError, code)
	assert.Contains(t, errOut, "SQLite")
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
