package amqp_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports/amqp"
	"github.com/b2131a45/eventkit/transports/internal/testutil"
)

// A Publish call of many messages goes to the broker in a few writes, not
// one per message (amqp091-go flushes after each), and the messages arrive
// in order.
func TestPublishOfManyMessagesGoesOutInFewWrites(t *testing.T) {
	t.Parallel()
	cfg := config(t)
	tr := newTransport(t, cfg)
	topic := testenv.Name(t, "cork")
	sub, err := tr.Subscriber("g")
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	received := testutil.Subscribe(t, sub, topic)

	const n = 1000
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = message.NewMessage(fmt.Sprintf("cork-%04d", i), fmt.Appendf(nil, `{"seq":%d,"pad":"%0300d"}`, i, i))
		msgs[i].Metadata.Set("name", "cork.tested")
	}
	pub, err := amqp.NewPublisher(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = pub.Close() })
	require.NoError(t, pub.Publish(topic, msgs[0])) // connects and declares
	testutil.Receive(t, received).Ack()

	before := amqp.PublisherWrites(pub)
	require.NoError(t, pub.Publish(topic, msgs[1:]...))
	writes := amqp.PublisherWrites(pub) - before
	// About 450 KB of frames: 7 writes of 64 KB and the rest, against one
	// write per message (999) without the cork.
	require.LessOrEqual(t, writes, int64(20), "%d messages in %d writes", n-1, writes)
	t.Logf("%d messages of one Publish call in %d writes", n-1, writes)

	deadline := time.After(30 * time.Second)
	for i := 1; i < n; i++ {
		select {
		case m := <-received:
			require.Equal(t, msgs[i].UUID, m.UUID, "delivery %d out of order", i)
			m.Ack()
		case <-deadline:
			t.Fatalf("only %d of %d messages delivered", i-1, n-1)
		}
	}
}
