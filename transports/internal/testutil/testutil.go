// Package testutil holds the helpers the transports' tests share.
package testutil

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Timeout bounds every wait for a message.
const Timeout = 30 * time.Second

// Subscribe subscribes sub to topic until the test ends.
func Subscribe(t testing.TB, sub message.Subscriber, topic string) <-chan *message.Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", topic, err)
	}
	return msgs
}

// Receive returns the next message, acked.
func Receive(t testing.TB, msgs <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-msgs:
		if !ok {
			t.Fatal("subscription closed while waiting for a message")
		}
		m.Ack()
		return m
	case <-time.After(Timeout):
		t.Fatalf("no message within %s", Timeout)
		return nil
	}
}

// Unavailable and Permanent read a publish error as eventkit's outbox
// relay does: through the first error in the chain with that method.
func Unavailable(err error) bool {
	var u interface{ Unavailable() bool }
	return errors.As(err, &u) && u.Unavailable()
}

func Permanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// NotConfirmed returns the UUIDs a publish error lists, as the relay reads
// them.
func NotConfirmed(err error) []string {
	var n interface{ NotConfirmed() []string }
	if errors.As(err, &n) {
		return n.NotConfirmed()
	}
	return nil
}

// LogBuffer collects log output from several goroutines.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
