package transports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/transports/amqp"
	"github.com/b2131a45/eventkit/transports/internal/redact"
	"github.com/b2131a45/eventkit/transports/kafka"
	"github.com/b2131a45/eventkit/transports/memory"
	"github.com/b2131a45/eventkit/transports/sql"
)

// Transport is an open connection to a broker: one publisher and any number
// of consumer-group subscribers. Its methods are safe for concurrent use.
type Transport struct {
	kind    Kind
	url     string
	backend interface {
		Publisher() message.Publisher
		Subscriber(group string) (message.Subscriber, error)
		Close() error
	}
}

const schemes = "amqp://, amqps://, kafka://, postgres://, postgresql://, mysql:// or mem://"

// Open connects to the broker of rawURL; see the package documentation for
// the schemes and each subpackage's ParseURL for the options. ctx bounds the
// connection (Kafka: its dial_timeout option does). A URL it cannot use
// gives a *URLError; a broker it cannot reach gives the connection's error.
// Neither contains the URL's password.
func Open(ctx context.Context, rawURL string) (*Transport, error) {
	return OpenConfig(ctx, rawURL, Config{})
}

// Config configures OpenConfig. The zero value is what Open uses.
type Config struct {
	// Logger receives the transport's logs (connection losses and
	// restores, consumer-group events), passwords redacted. Defaults to
	// slog.Default().
	Logger *slog.Logger
}

// OpenConfig is Open with a Config.
func OpenConfig(ctx context.Context, rawURL string, cfg Config) (*Transport, error) {
	shown := redact.URL(rawURL)
	scheme, _, found := strings.Cut(rawURL, "://")
	if !found || scheme == "" {
		return nil, &URLError{URL: shown, Err: fmt.Errorf("no scheme: want %s", schemes)}
	}
	kind, err := kindOf(strings.ToLower(scheme))
	if err != nil {
		return nil, &URLError{URL: shown, Err: err}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	t := &Transport{kind: kind, url: shown}
	switch kind {
	case KindAMQP:
		cfg, err := amqp.ParseURL(rawURL)
		if err != nil {
			return nil, &URLError{URL: shown, Err: err}
		}
		cfg.Logger = logger
		t.backend, err = amqp.New(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("transports: open %s: %w", shown, err)
		}
	case KindKafka:
		cfg, err := kafka.ParseURL(rawURL)
		if err != nil {
			return nil, &URLError{URL: shown, Err: err}
		}
		cfg.Logger = logger
		t.backend, err = kafka.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("transports: open %s: %w", shown, err)
		}
	case KindPostgres, KindMySQL:
		src, err := sql.ParseURL(rawURL)
		if err != nil {
			return nil, &URLError{URL: shown, Err: err}
		}
		src.Config.Logger = logger
		t.backend, err = src.Open(ctx)
		if err != nil {
			return nil, fmt.Errorf("transports: open %s: %w", shown, err)
		}
	case KindMemory:
		cfg, err := memory.ParseURL(rawURL)
		if err != nil {
			return nil, &URLError{URL: shown, Err: err}
		}
		t.backend, err = memory.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("transports: open %s: %w", shown, err)
		}
	}
	return t, nil
}

func kindOf(scheme string) (Kind, error) {
	switch scheme {
	case "amqp", "amqps":
		return KindAMQP, nil
	case "kafka":
		return KindKafka, nil
	case "postgres", "postgresql":
		return KindPostgres, nil
	case "mysql":
		return KindMySQL, nil
	case "mem":
		return KindMemory, nil
	default:
		return "", fmt.Errorf("%w %q: want %s", ErrUnknownScheme, scheme, schemes)
	}
}

// Kind reports the family of broker.
func (t *Transport) Kind() Kind { return t.kind }

// Capabilities reports what the transport promises about order and about
// new consumer groups.
func (t *Transport) Capabilities() Capabilities { return capabilitiesOf(t.kind) }

// String is the URL the transport was opened with, password masked.
func (t *Transport) String() string { return t.url }

// Publisher returns the transport's publisher. The transport owns it: its
// Close does nothing; Close the transport instead. Publish returns a
// *PublishError when the broker does not confirm some messages and
// ErrClosed after Close.
func (t *Transport) Publisher() message.Publisher { return t.backend.Publisher() }

// Subscriber returns a new subscriber in the durable consumer group: each
// group receives every message of a topic, the subscribers of one group
// share them. The method value fits func(group string) (message.Subscriber,
// error), the subscriber constructor eventkit's cqrs package takes. Close
// the subscriber when done; Close on the transport closes those still open.
// The subscriber implements message.SubscribeInitializer.
func (t *Transport) Subscriber(group string) (message.Subscriber, error) {
	if group == "" {
		return nil, ErrNoGroup
	}
	sub, err := t.backend.Subscriber(group)
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("transports: subscriber %q: %w", group, err)
	}
	return sub, nil
}

// Close closes the subscribers still open, the publisher, waiting for the
// Publish calls in flight, and the connections. It is safe to call more
// than once.
func (t *Transport) Close() error {
	return t.backend.Close()
}
