package main

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
	"github.com/b2131a45/eventkit/transports/amqp"
)

const dlqGroup = middleware.DeadLetterGroupDefault

// requireMissing runs dlq list and dlq replay on a dead-letter topic that
// does not exist: each exits 1, names the topic and the group, and, for a
// topic without ".dlq", says it is probably mistyped.
func requireMissing(t *testing.T, url, topic string, extra ...string) {
	t.Helper()
	for _, cmd := range []string{"list", "replay"} {
		code, out, errOut := eventkit(t, append([]string{"dlq", cmd, "--transport", url, "--topic", topic, "--idle", "200ms"}, extra...)...)
		require.Equal(t, exitError, code, "stdout %q stderr %q", out, errOut)
		assert.Empty(t, out)
		group := dlqGroup
		if i := slices.Index(extra, "--group"); i >= 0 {
			group = extra[i+1]
		}
		assert.Contains(t, errOut, `dead-letter topic "`+topic+`" does not exist for consumer group "`+group+`"`)
		assert.Contains(t, errOut, "nothing was read or changed")
		if len(topic) < 4 || topic[len(topic)-4:] != ".dlq" {
			assert.Contains(t, errOut, `"`+topic+`" does not end in ".dlq", so it is probably mistyped: the dead letters of topic `+
				topic+` are in "`+topic+`.dlq"`)
		} else {
			assert.NotContains(t, errOut, "mistyped")
		}
	}
}

// The new user's mistakes on RabbitMQ: the live topic instead of its .dlq,
// and a topic that does not exist. Neither declares anything: before, the
// first bound a durable queue to the live exchange, which then collected
// live messages, the second declared an exchange and a queue.
func TestDLQListOfMissingTopicDeclaresNothingOnRabbitMQ(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, url := rabbitmq(t)
	live := testenv.Name(t, "cli") + ".order_created"
	unknown := testenv.Name(t, "cli") + ".dlq"
	deleteAMQP(t, conn,
		[]string{amqp.QueueName(live, "app"), amqp.QueueName(live, dlqGroup), amqp.QueueName(live, "ops"),
			amqp.QueueName(live+".dlq", dlqGroup), amqp.QueueName(unknown, dlqGroup)},
		[]string{live, live + ".dlq", unknown})

	// The live topic, as the application set it up: its exchange and a
	// consumer's queue, with a message waiting.
	tr, err := transports.Open(ctx, url)
	require.NoError(t, err)
	defer tr.Close()
	sub, err := tr.Subscriber("app")
	require.NoError(t, err)
	require.NoError(t, sub.(message.SubscribeInitializer).SubscribeInitialize(live))
	require.NoError(t, sub.Close())
	require.NoError(t, tr.Publisher().Publish(live, message.NewMessage(watermill.NewUUID(), []byte("live"))))

	requireMissing(t, url, live)
	requireMissing(t, url, live, "--group", "ops")
	assert.False(t, queueExists(t, conn, amqp.QueueName(live, dlqGroup)), "a queue was bound to the live exchange")
	assert.False(t, queueExists(t, conn, amqp.QueueName(live, "ops")))

	requireMissing(t, url, unknown)
	assert.False(t, exchangeExists(t, conn, unknown), "an exchange was declared")
	assert.False(t, queueExists(t, conn, amqp.QueueName(unknown, dlqGroup)), "a queue was declared")
	assert.False(t, exchangeExists(t, conn, live+".dlq"))

	// The live message is still there, for the application only.
	ch, err := conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(amqp.QueueName(live, "app"), true, false, false, false, nil)
	require.NoError(t, err)
	assert.Equal(t, 1, q.Messages)
}

// The same on PostgreSQL and MySQL: no table is created, and on Kafka (a
// kfake cluster that creates topics on demand) no topic.
func TestDLQListOfMissingTopicCreatesNothing(t *testing.T) {
	t.Parallel()
	for _, dbs := range databases[:2] {
		t.Run(dbs.name, func(t *testing.T) {
			t.Parallel()
			d := dbs.open(t)
			topic := testenv.Name(t, "cli")
			delay := topic + "_delay"
			url := withParam(d.url, "delay_table="+delay)
			// In case a check failed and they were made after all.
			dropTables(t, d.db, d.dialect, "watermill_"+topic, "watermill_offsets_"+topic, "watermill_"+topic+".dlq",
				"watermill_offsets_"+topic+".dlq", delay)
			requireMissing(t, url, topic)
			requireMissing(t, url, topic+".dlq")
			requireMissing(t, url, topic+".dlq", "--group", "ops")
			assert.Empty(t, tablesLike(t, d, topic), "a table was created")
		})
	}
	t.Run("kafka", func(t *testing.T) {
		t.Parallel()
		url, cl := kafka(t)
		topic := testenv.Name(t, "cli")
		requireMissing(t, url, topic)
		requireMissing(t, url, topic+".dlq")
		assert.NotContains(t, kafkaTopics(t, cl), topic)
		assert.NotContains(t, kafkaTopics(t, cl), topic+".dlq")

		// A name Kafka refuses is bad usage, found before anything is made.
		code, _, errOut := eventkit(t, "dlq", "list", "--transport", url, "--topic", "orders:x.dlq")
		assert.Equal(t, exitUsage, code)
		assert.Contains(t, errOut, `"orders:x.dlq"`)
	})
}

// deadLetter is a message as PoisonQueue parks it.
func deadLetter(original, handler string) *message.Message {
	m := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	m.Metadata.Set(events.KeyName, "cli.event")
	m.Metadata.Set(events.KeyEventID, m.UUID)
	m.Metadata.Set(middleware.KeyReason, string(middleware.ReasonPermanent))
	m.Metadata.Set(middleware.KeyError, "cannot handle this")
	m.Metadata.Set(middleware.KeyAttempts, "1")
	m.Metadata.Set(middleware.KeyOriginalTopic, original)
	m.Metadata.Set(middleware.KeyHandler, handler)
	m.Metadata.Set(middleware.KeyFailedAt, time.Now().UTC().Format(time.RFC3339Nano))
	return m
}

// dlqList runs dlq list --json and returns the event ids by handler.
func dlqList(t *testing.T, url, topic, idle string) map[string]string {
	t.Helper()
	code, out, errOut := eventkit(t, "dlq", "list", "--transport", url, "--topic", topic, "--idle", idle, "--json")
	require.Equal(t, exitOK, code, errOut)
	var dead []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &dead))
	got := map[string]string{}
	for _, x := range dead {
		assert.Equal(t, "permanent", x["reason"])
		got[x["handler"].(string)] = x["event_id"].(string)
	}
	return got
}

// On a dead-letter topic that exists, on PostgreSQL and Kafka, dlq list
// lists and puts back, dlq replay says how many it replayed and kept.
//
// Not on MySQL: there a scan (middleware.ListDLQ, ReplayDLQ, before this
// CLI too) sees only the first message, then waits out the SQL
// subscriber's AckDeadline (30 s), as the put-back insert waits for the
// lock of the subscription's own transaction. That is a transports/sql
// matter, reported apart.
func TestDLQCommandsOnLogTransports(t *testing.T) {
	t.Parallel()
	type setup struct {
		url, idle string
	}
	run := func(t *testing.T, s setup, topic string) {
		ctx := context.Background()
		dlq := topic + ".dlq"
		tr, err := transports.Open(ctx, s.url)
		require.NoError(t, err)
		defer tr.Close()
		a, b := deadLetter(topic, "h1"), deadLetter(topic, "h2")
		require.NoError(t, tr.Publisher().Publish(dlq, a, b))

		require.Equal(t, map[string]string{"h1": a.UUID, "h2": b.UUID}, dlqList(t, s.url, dlq, s.idle))
		code, out, errOut := eventkit(t, "dlq", "list", "--transport", s.url, "--topic", dlq, "--idle", s.idle)
		require.Equal(t, exitOK, code, errOut)
		assert.Contains(t, out, "cannot handle this")
		assert.Contains(t, out, "\n2 dead letter(s) listed from "+dlq+" (group "+dlqGroup+") of 2 message(s) read, nothing taken or changed\n")
		// Listing again shows the same, in the same order: nothing was taken or appended.
		_, again, _ := eventkit(t, "dlq", "list", "--transport", s.url, "--topic", dlq, "--idle", s.idle)
		assert.Equal(t, out, again)

		code, out, errOut = eventkit(t, "dlq", "replay", "--transport", s.url, "--topic", dlq, "--handler", "h1", "--idle", s.idle)
		require.Equal(t, exitOK, code, errOut)
		assert.Equal(t, "replayed 1 dead letter(s) to their original topics; 1 kept in "+dlq+" (0 not dead letters)\n", out)
		require.Equal(t, map[string]string{"h2": b.UUID}, dlqList(t, s.url, dlq, s.idle))
	}
	for _, dbs := range databases[:1] {
		t.Run(dbs.name, func(t *testing.T) {
			t.Parallel()
			d := dbs.open(t)
			topic := testenv.Name(t, "cli")
			delay := topic + "_delay"
			dropTables(t, d.db, d.dialect, "watermill_"+topic, "watermill_offsets_"+topic, "watermill_"+topic+".dlq",
				"watermill_offsets_"+topic+".dlq", delay)
			run(t, setup{withParam(d.url, "delay_table="+delay), "500ms"}, topic)
			assert.ElementsMatch(t, []string{"watermill_" + topic, "watermill_" + topic + ".dlq", "watermill_offsets_" + topic + ".dlq", delay},
				tablesLike(t, d, topic), "what the scans and the replay made, and only that (dropped when the test ends)")
		})
	}
	t.Run("kafka", func(t *testing.T) {
		t.Parallel()
		url, _ := kafka(t)
		run(t, setup{url, "2s"}, testenv.Name(t, "cli"))
	})
}

// A dead letter made by the Default chain over RabbitMQ is listed by
// "dlq list" and re-delivered by "dlq replay" with its event id.
func TestDLQCommandsOnRabbitMQ(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, url := rabbitmq(t)
	tr, err := transports.Open(ctx, url)
	require.NoError(t, err)
	defer tr.Close()
	topic := testenv.Name(t, "cli")
	handler := topic + "_h"
	dlq := middleware.DeadLetterTopic(topic)
	queues := []string{amqp.QueueName(topic, handler), amqp.QueueName(dlq, dlqGroup)}
	for _, l := range middleware.DelayedRetryLevelsDefault {
		queues = append(queues, amqp.DelayQueueName(topic, handler, l))
	}
	deleteAMQP(t, conn, queues, []string{topic, dlq})

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
	assert.Contains(t, out, "\n1 dead letter(s) listed from "+dlq)

	// The mistyped form, with dead letters waiting in the right one.
	requireMissing(t, url, topic)
	assert.False(t, queueExists(t, conn, amqp.QueueName(topic, dlqGroup)))

	code, out, errOut = eventkit(t, "dlq", "replay", "--transport", url, "--topic", dlq, "--handler", handler, "--idle", "500ms")
	require.Equal(t, exitOK, code, errOut)
	assert.Equal(t, "replayed 1 dead letter(s) to their original topics; 0 kept in "+dlq+" (0 not dead letters)\n", out)

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
