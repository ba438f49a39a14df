package kafka

import (
	"context"
	"errors"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/transports/internal/handle"
	"github.com/b2131a45/eventkit/transports/internal/redact"
)

// Transport bundles a Publisher and the Subscribers of any number of
// consumer groups, and the client that Health reuses.
type Transport struct {
	cfg    Config
	pub    *Publisher
	owned  message.Publisher
	subs   *handle.Subscribers
	health *healthClient
	once   sync.Once
	err    error
}

// New validates cfg, connects the publisher and returns the transport.
func New(cfg Config) (*Transport, error) {
	pub, err := NewPublisher(cfg)
	if err != nil {
		return nil, err
	}
	secrets := redact.New(cfg.Password)
	return &Transport{
		cfg:    cfg,
		pub:    pub,
		owned:  handle.Owned(pub, secrets),
		subs:   handle.NewSubscribers(secrets),
		health: newHealthClient(cfg, secrets),
	}, nil
}

// Open returns a transport configured by a kafka:// URL (see ParseURL).
// Sarama takes no context: connection attempts are bounded by the
// dial_timeout option instead of ctx.
func Open(_ context.Context, rawURL string) (*Transport, error) {
	cfg, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return New(cfg)
}

// Publisher returns the transport's publisher. The transport owns it: its
// Close does nothing, Close the transport instead.
func (t *Transport) Publisher() message.Publisher { return t.owned }

// Subscriber returns a new member of the consumer group. It implements
// message.SubscribeInitializer to create a topic ahead of time.
func (t *Transport) Subscriber(group string) (message.Subscriber, error) {
	if t.pub.isClosed() {
		return nil, ErrClosed
	}
	sub, err := NewSubscriber(t.cfg, group)
	if err != nil {
		return nil, err
	}
	return t.subs.Add(sub)
}

// Close closes the subscribers, then the publisher, then Health's client
// (waiting for a Health call in flight). It is safe to call more than once.
func (t *Transport) Close() error {
	t.once.Do(func() {
		t.err = errors.Join(t.subs.CloseAll(), t.pub.Close(), t.health.close())
	})
	return t.err
}
