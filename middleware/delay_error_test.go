package middleware_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/middleware"
)

// unavailable is a transport error that says the broker is unavailable.
type unavailable struct{ error }

func (unavailable) Unavailable() bool { return true }

// flakyDelayer fails its first delays with err, then delays through next.
type flakyDelayer struct {
	next  middleware.Delayer
	err   error
	fails int

	mu    sync.Mutex
	calls int
}

func (d *flakyDelayer) DelayLevels() int { return d.next.DelayLevels() }

func (d *flakyDelayer) Delay(topic, group string, level int, dur time.Duration, msgs ...*message.Message) error {
	d.mu.Lock()
	d.calls++
	fail := d.calls <= d.fails
	d.mu.Unlock()
	if fail {
		return d.err
	}
	return d.next.Delay(topic, group, level, dur, msgs...)
}

// TestDelayFailureIsNotADeadLetter: when the broker is unavailable at the
// moment DelayedRetry delays a message (its publish not confirmed, the
// connection lost), PoisonQueue does not dead-letter it: it is nacked,
// comes back, is delayed and handled. A delay that can never work (a
// permanent error) is dead-lettered with both errors, not redelivered in
// a loop. Found by the nemesis: a retry delayed during a RabbitMQ fault
// was dead-lettered.
func TestDelayFailureIsNotADeadLetter(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		err        error
		deadLetter bool
	}{
		"transient": {err: unavailable{errors.New("amqp: publish not confirmed: channel closed")}},
		"permanent": {err: errors.New("amqp: delay queue name too long"), deadLetter: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tr := newMemory(t)
			topic := "delayerr." + name + "." + watermill.NewShortUUID()
			delayer := &flakyDelayer{next: tr.Publisher().(middleware.Delayer), err: tc.err, fails: 1}
			dlq := collect(t, tr.Subscriber, "probe", middleware.DeadLetterTopic(topic))
			pq := newPoison(t, tr.Publisher(), middleware.PoisonQueueConfig{})
			dr, err := middleware.NewDelayedRetry(delayer, middleware.DelayedRetryConfig{Levels: []time.Duration{100 * time.Millisecond}})
			require.NoError(t, err)
			retry, err := middleware.NewRetry(middleware.RetryConfig{MaxAttempts: 1})
			require.NoError(t, err)
			handled := make(chan string, 10)
			sub, err := tr.Subscriber("h")
			require.NoError(t, err)
			runRouter(t, sub, "h", topic, func(m *message.Message) error {
				if m.Metadata.Get(middleware.KeyDelayedAttempts) == "" {
					return errors.New("downstream is down")
				}
				handled <- m.UUID
				return nil
			}, pq.Middleware, dr.Middleware, retry.Middleware)

			msg := message.NewMessage(watermill.NewUUID(), []byte("{}"))
			require.NoError(t, tr.Publisher().Publish(topic, msg))
			if tc.deadLetter {
				got := dlq.wait(t, 1)
				dl, err := middleware.DeadLetterFromMessage(got[0])
				require.NoError(t, err)
				require.Contains(t, dl.Error, "delay queue name too long")
				require.Contains(t, dl.Error, "downstream is down")
				time.Sleep(300 * time.Millisecond)
				require.Len(t, dlq.all(), 1, "dead-lettered once")
				require.Empty(t, handled)
				return
			}
			select {
			case id := <-handled:
				require.Equal(t, msg.UUID, id)
			case <-time.After(10 * time.Second):
				t.Fatal("the message was not handled after the broker came back")
			}
			require.Empty(t, dlq.all(), "a broker fault at the delay is no reason to dead-letter")
			delayer.mu.Lock()
			defer delayer.mu.Unlock()
			require.Equal(t, 2, delayer.calls, "delayed again after the nack")
		})
	}
}
