package amqp_test

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports/amqp"
)

// receive returns the next message of msgs, failing the test after 10 s.
func receive(t *testing.T, msgs <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10 s")
		return nil
	}
}

// none checks that msgs hands out nothing for a moment.
func none(t *testing.T, msgs <-chan *message.Message, why string) {
	t.Helper()
	select {
	case m := <-msgs:
		t.Fatalf("%s: got message %s", why, m.UUID)
	case <-time.After(300 * time.Millisecond):
	}
}

func publishN(t *testing.T, tr *amqp.Transport, topic string, n int) {
	t.Helper()
	for i := range n {
		require.NoError(t, tr.Publisher().Publish(topic, message.NewMessage(strconv.Itoa(i), []byte("p"))))
	}
}

// subscribe returns a transport with Config.Concurrency concurrency, a new
// topic and the messages of a subscription of group "g" to it.
func subscribe(t *testing.T, concurrency int, prefix string) (*amqp.Transport, string, <-chan *message.Message) {
	t.Helper()
	cfg := config(t)
	cfg.Concurrency = concurrency
	tr, topic, _, msgs := subscribeWith(t, cfg, prefix)
	return tr, topic, msgs
}

// subscribeWith is subscribe with the whole config; it returns the
// subscriber too.
func subscribeWith(t *testing.T, cfg amqp.Config, prefix string) (*amqp.Transport, string, message.Subscriber, <-chan *message.Message) {
	t.Helper()
	tr := newTransport(t, cfg)
	topic := testenv.Name(t, prefix)
	sub, err := tr.Subscriber("g")
	require.NoError(t, err)
	msgs, err := sub.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	return tr, topic, sub, msgs
}

// resubscribe subscribes group "g" of tr to topic again, as a restarted
// consumer does.
func resubscribe(t *testing.T, tr *amqp.Transport, topic string) <-chan *message.Message {
	t.Helper()
	again, err := tr.Subscriber("g")
	require.NoError(t, err)
	t.Cleanup(func() { _ = again.Close() })
	msgs, err := again.Subscribe(context.Background(), topic)
	require.NoError(t, err)
	return msgs
}

func TestConcurrency(t *testing.T) {
	t.Parallel()

	t.Run("one at a time by default, in order", func(t *testing.T) {
		t.Parallel()
		tr, topic, msgs := subscribe(t, 0, "conc1") // the default
		publishN(t, tr, topic, 3)
		for i := range 3 {
			m := receive(t, msgs)
			require.Equal(t, strconv.Itoa(i), m.UUID)
			none(t, msgs, "the previous message is not acked")
			m.Ack()
		}
	})

	t.Run("up to Concurrency unacked, then one per ack", func(t *testing.T) {
		t.Parallel()
		tr, topic, msgs := subscribe(t, 4, "conc4") // Prefetch unset: it follows Concurrency
		publishN(t, tr, topic, 6)
		var out []*message.Message
		for range 4 {
			out = append(out, receive(t, msgs))
		}
		none(t, msgs, "four are unacked")
		out[2].Ack()
		out = append(out, receive(t, msgs))
		none(t, msgs, "four are unacked again")
		out[0].Nack() // requeued: it comes back
		back := receive(t, msgs)
		require.Contains(t, []string{out[0].UUID, "5"}, back.UUID)
		back.Ack()
		for _, m := range []*message.Message{out[1], out[3], out[4]} {
			m.Ack()
		}
		// What is left (5, or 0 again) arrives, and nothing after it.
		seen := map[string]bool{back.UUID: true}
		for len(seen) < 2 {
			m := receive(t, msgs)
			seen[m.UUID] = true
			m.Ack()
		}
		require.True(t, seen["0"] && seen["5"], "%v", seen)
		none(t, msgs, "every message was acked")
	})

	t.Run("acks settled together reach the broker, none twice", func(t *testing.T) {
		t.Parallel()
		cfg := config(t)
		cfg.Concurrency, cfg.Prefetch = 8, 50
		var logs testenv.Buffer
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		tr, topic, sub, msgs := subscribeWith(t, cfg, "concrun")
		const n = 200
		publishN(t, tr, topic, n)
		// Acked from their own goroutines, in whatever order they finish,
		// with a nack (requeued) now and then: runs of settled deliveries
		// go out as multiple acks, the rest alone. A multiple ack naming a
		// tag the broker no longer holds would close the channel: the
		// subscription would warn and redeliver.
		got, nacked := map[string]bool{}, map[string]bool{}
		for len(got) < n {
			m := receive(t, msgs)
			require.False(t, got[m.UUID], "message %s came again after its ack", m.UUID)
			if !nacked[m.UUID] && len(nacked) < 10 && len(got)%17 == 0 {
				nacked[m.UUID] = true // once: it comes back, then is acked
				go m.Nack()
				continue
			}
			got[m.UUID] = true
			go func() {
				time.Sleep(time.Duration(len(m.UUID)%3) * time.Millisecond)
				m.Ack()
			}()
		}
		none(t, msgs, "every message was acked")
		require.NoError(t, sub.Close())
		none(t, resubscribe(t, tr, topic), "the broker got every ack")
		require.Empty(t, logs.String(), "no ack may fail")
	})

	t.Run("closing requeues the unacked messages", func(t *testing.T) {
		t.Parallel()
		cfg := config(t)
		cfg.Concurrency = 3
		tr, topic, sub, msgs := subscribeWith(t, cfg, "concclose")
		publishN(t, tr, topic, 3)
		first := []*message.Message{receive(t, msgs), receive(t, msgs), receive(t, msgs)}
		first[1].Ack()
		require.NoError(t, sub.Close())

		msgs2 := resubscribe(t, tr, topic)
		got := map[string]bool{}
		for range 2 {
			m := receive(t, msgs2)
			got[m.UUID] = true
			m.Ack()
		}
		require.Equal(t, map[string]bool{first[0].UUID: true, first[2].UUID: true}, got)
		none(t, msgs2, "the acked message stays acked")
	})
}
