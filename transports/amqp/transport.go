package amqp

import (
	"context"
	"errors"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/transports/internal/errs"
	"github.com/b2131a45/eventkit/transports/internal/handle"
	"github.com/b2131a45/eventkit/transports/internal/redact"
)

// Transport bundles a Publisher and the Subscribers of any number of
// consumer groups. The subscribers share one connection, the publisher has
// its own.
type Transport struct {
	cfg     Config
	secrets redact.Secrets
	pub     *Publisher
	owned   message.Publisher
	consume *connector
	subs    *handle.Subscribers
	once    sync.Once
	err     error
}

// New validates cfg, connects the publisher and returns the transport. The
// subscribers' connection is dialed by the first Subscriber.
func New(ctx context.Context, cfg Config) (*Transport, error) {
	pub, err := NewPublisher(ctx, cfg)
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	secrets := redact.New(cfg.password())
	return &Transport{
		cfg:     cfg,
		secrets: secrets,
		pub:     pub,
		owned:   handle.Owned(pub, secrets),
		consume: newConnector(cfg, "subscribers", secrets.Logger(cfg.Logger)),
		subs:    handle.NewSubscribers(secrets),
	}, nil
}

// Open returns a transport configured by an amqp:// or amqps:// URL (see
// ParseURL).
func Open(ctx context.Context, rawURL string) (*Transport, error) {
	cfg, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return New(ctx, cfg)
}

// Publisher returns the transport's publisher. The transport owns it: its
// Close does nothing, Close the transport instead.
func (t *Transport) Publisher() message.Publisher { return t.owned }

// Subscriber returns a new subscriber of the consumer group, which
// implements message.SubscribeInitializer to declare the group's queue
// ahead of time. It connects the subscribers' connection if needed.
func (t *Transport) Subscriber(group string) (message.Subscriber, error) {
	if group == "" {
		return nil, ErrNoGroup
	}
	if err := errs.CheckName("amqp: consumer group", group); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.DialTimeout)
	defer cancel()
	if _, err := t.consume.get(ctx); err != nil {
		return nil, t.secrets.Error(err)
	}
	return t.subs.Add(newSubscriber(t.cfg, group, t.consume, false, t.secrets))
}

// Close closes the subscribers, then the publisher (waiting for Publish
// calls in flight), then the connections. It is safe to call more than once.
func (t *Transport) Close() error {
	t.once.Do(func() {
		subsErr := t.subs.CloseAll()
		pubErr := t.pub.Close()
		connErr := t.secrets.Error(t.consume.close())
		t.err = errors.Join(subsErr, pubErr, connErr)
	})
	return t.err
}
