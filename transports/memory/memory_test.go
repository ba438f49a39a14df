package memory_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports/memory"
	"github.com/b2131a45/eventkit/transports/transporttest"
)

func TestMain(m *testing.M) {
	testenv.Main(m)
}

func newTransport(t *testing.T, cfg memory.Config) *memory.Transport {
	t.Helper()
	tr, err := memory.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func TestConformance(t *testing.T) {
	t.Parallel()
	transporttest.Run(t, func(t *testing.T) transporttest.Transport {
		return newTransport(t, memory.Config{})
	}, transporttest.Features{
		OrderedPerKey:       true,
		OrderedPerTopic:     true,
		NewGroupsSeeHistory: true,
	})
}

func TestUniversal(t *testing.T) {
	t.Parallel()
	// One transport per test function stands for the broker: the suite
	// makes many publisher/subscriber pairs that must see the same topics.
	tr := newTransport(t, memory.Config{ResendInterval: 1})
	withGroup := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		sub, err := tr.Subscriber(group)
		if err != nil {
			t.Fatal(err)
		}
		return tr.Publisher(), sub
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:                      true,
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		NewSubscriberReceivesOldMessages:    false,
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		return withGroup(t, "test")
	}, withGroup)
}

func TestConfigAndURL(t *testing.T) {
	t.Parallel()
	_, err := memory.New(memory.Config{ResendInterval: -1})
	require.ErrorContains(t, err, "Config.ResendInterval")

	cfg, err := memory.ParseURL("mem://?resend_interval=5ms")
	require.NoError(t, err)
	require.Equal(t, memory.Config{ResendInterval: 5 * time.Millisecond}, cfg)
	for raw, want := range map[string]string{
		"mem://x":          "takes no host",
		"mem:///path":      "takes no host",
		"mem://?foo=1":     `unknown option "foo"`,
		"amqp://localhost": `scheme "amqp" is not mem`,
	} {
		_, err := memory.ParseURL(raw)
		require.ErrorContains(t, err, want, raw)
	}

	tr := newTransport(t, memory.Config{})
	_, err = tr.Subscriber("")
	require.ErrorIs(t, err, memory.ErrNoGroup)
}

// TestScheduledPublish: a message published with events.KeyDeliverAt ahead
// reaches every group once due, never before, and does not hold back the
// messages published after it.
func TestScheduledPublish(t *testing.T) {
	t.Parallel()
	tr := newTransport(t, memory.Config{})
	pub := tr.Publisher()
	s, ok := pub.(interface{ SchedulesDelivery() bool })
	require.True(t, ok && s.SchedulesDelivery())
	start := time.Now()
	later := message.NewMessage("later", nil)
	later.Metadata.Set(events.KeyDeliverAt, start.Add(300*time.Millisecond).UTC().Format(time.RFC3339Nano))
	require.NoError(t, pub.Publish("t", later, message.NewMessage("now", nil)))
	for _, group := range []string{"a", "b"} {
		sub, err := tr.Subscriber(group)
		require.NoError(t, err)
		msgs, err := sub.Subscribe(t.Context(), "t")
		require.NoError(t, err)
		for _, want := range []string{"now", "later"} {
			select {
			case m := <-msgs:
				m.Ack()
				require.Equal(t, want, m.UUID, group)
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: no %s", group, want)
			}
		}
		require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	}
}

// A message acked just before its subscriber closes stays acked: the next
// subscriber of the group does not get it again. On one P the consumer's
// goroutine can find the ack and the close both there, where select picks
// either at random (a discarded dead letter came back in CI).
func TestAckThenClose_NotRedelivered(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	tr := newTransport(t, memory.Config{ResendInterval: time.Millisecond})
	const n = 40
	for i := range n {
		require.NoError(t, tr.Publisher().Publish("t", message.NewMessage(fmt.Sprint(i), nil)))
	}
	for i := range n {
		sub, err := tr.Subscriber("g")
		require.NoError(t, err)
		msgs, err := sub.Subscribe(t.Context(), "t")
		require.NoError(t, err)
		// Let the consumer's goroutine block on handing the message out:
		// taking it then readies that goroutine without running it, so it
		// finds the ack and the close both there.
		time.Sleep(time.Millisecond)
		select {
		case m := <-msgs:
			require.Equal(t, fmt.Sprint(i), m.UUID, "an acked message came back")
			m.Ack()
		case <-time.After(5 * time.Second):
			t.Fatalf("no message %d", i)
		}
		require.NoError(t, sub.Close())
	}
}
