package amqp_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports/amqp"
	"github.com/b2131a45/eventkit/transports/internal/testutil"
)

// TestQuorumDelayKickerGivesBackWhatIsNotDue: the kicker of a publisher
// looks at a quorum delay queue after its last message was due. Here
// another publisher delayed a message into the same queue meanwhile: the
// kicker's basic.get finds that message, not yet due, and gives it back.
// Both messages come back to the group once each, the second no earlier
// than it was due, and on a healthy broker the kicker reports no message
// left past its due time.
func TestQuorumDelayKickerGivesBackWhatIsNotDue(t *testing.T) {
	t.Parallel()
	cfg := config(t)
	cfg.QueueArgs = amqp091.Table{"x-queue-type": "quorum"}
	var logs testenv.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tr := newTransport(t, cfg)
	topic := testenv.Name(t, "kick")
	sub, err := tr.Subscriber("g")
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	msgs := testutil.Subscribe(t, sub, topic)

	first, err := amqp.NewPublisher(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = first.Close() })
	other, err := amqp.NewPublisher(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })

	const delay = 2 * time.Second
	m1 := message.NewMessage(watermill.NewUUID(), []byte("first"))
	require.NoError(t, first.Delay(topic, "g", 1, delay, m1))
	// first's kicker looks at the queue 2 s after m1 was due (4 s from
	// now); m2, delayed 3 s from now, is due 1 s after that.
	time.Sleep(3 * time.Second)
	m2 := message.NewMessage(watermill.NewUUID(), []byte("other"))
	sent := time.Now()
	require.NoError(t, other.Delay(topic, "g", 1, delay, m2))

	got := map[string]int{}
	var m2At time.Time
	deadline := time.After(20 * time.Second)
	for got[m1.UUID] == 0 || got[m2.UUID] == 0 {
		select {
		case m := <-msgs:
			got[m.UUID]++
			if m.UUID == m2.UUID {
				m2At = time.Now()
			}
			m.Ack()
		case <-deadline:
			t.Fatalf("the delayed messages did not come back: %v", got)
		}
	}
	// Nothing more within the kicker's next look (one delay + grace).
	select {
	case m := <-msgs:
		t.Fatalf("an extra message came back: %s %q", m.UUID, m.Payload)
	case <-time.After(2*delay + time.Second):
	}
	assert.Equal(t, map[string]int{m1.UUID: 1, m2.UUID: 1}, got)
	assert.GreaterOrEqual(t, m2At.Sub(sent), delay-100*time.Millisecond, "m2 came back before it was due")
	assert.Positive(t, amqp.KickerGets(first), "the kicker looked at the queue while m2 waited in it")
	assert.NotContains(t, logs.String(), "past their due time", "a healthy broker expired everything on time")
}
