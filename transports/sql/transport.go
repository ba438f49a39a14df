package sql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/transports/internal/handle"
	"github.com/b2131a45/eventkit/transports/internal/redact"
)

// Transport bundles a Publisher and the Subscribers of any number of
// consumer groups over one database.
type Transport struct {
	db      *sql.DB
	ownsDB  bool
	cfg     Config
	secrets redact.Secrets
	pub     *Publisher
	owned   message.Publisher
	subs    *handle.Subscribers
	once    sync.Once
	err     error
}

// New returns a transport over db, which the caller keeps owning: Close
// does not close it.
func New(db *sql.DB, cfg Config) (*Transport, error) {
	return newTransport(db, false, cfg, redact.Secrets{})
}

func newTransport(db *sql.DB, ownsDB bool, cfg Config, secrets redact.Secrets) (*Transport, error) {
	pub, err := NewPublisher(db, cfg)
	if err != nil {
		return nil, err
	}
	return &Transport{
		db:      db,
		ownsDB:  ownsDB,
		cfg:     cfg,
		secrets: secrets,
		pub:     pub,
		owned:   handle.Owned(pub, secrets),
		subs:    handle.NewSubscribers(secrets),
	}, nil
}

// Open connects to the database of a postgres://, postgresql:// or
// mysql:// URL (see ParseURL) and returns a transport that owns the
// connection pool.
func Open(ctx context.Context, rawURL string) (*Transport, error) {
	src, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return src.Open(ctx)
}

// Open connects to the source's database, checks the connection within
// ctx and returns a transport that owns the connection pool.
func (s Source) Open(ctx context.Context) (*Transport, error) {
	if err := s.Config.validate(); err != nil {
		return nil, err
	}
	secrets := redact.New(s.password)
	db, err := s.OpenDB()
	if err != nil {
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, secrets.Error(fmt.Errorf("sql: connect to %s: %w", s.Config.Dialect, err))
	}
	cfg := s.Config
	cfg.Logger = secrets.Logger(cfg.Logger)
	t, err := newTransport(db, true, cfg, secrets)
	if err != nil {
		_ = db.Close()
		return nil, secrets.Error(err)
	}
	return t, nil
}

// Publisher returns the transport's publisher. The transport owns it: its
// Close does nothing, Close the transport instead.
func (t *Transport) Publisher() message.Publisher { return t.owned }

// Subscriber returns a new subscriber of the consumer group. It implements
// message.SubscribeInitializer to create a topic's tables ahead of time.
func (t *Transport) Subscriber(group string) (message.Subscriber, error) {
	if t.pub.isClosed() {
		return nil, ErrClosed
	}
	sub, err := NewSubscriber(t.db, t.cfg, group)
	if err != nil {
		return nil, err
	}
	return t.subs.Add(sub)
}

// Close closes the subscribers, then the publisher, then the database pool
// if the transport opened it. It is safe to call more than once.
func (t *Transport) Close() error {
	t.once.Do(func() {
		err := errors.Join(t.subs.CloseAll(), t.pub.Close())
		if t.ownsDB {
			err = errors.Join(err, t.db.Close())
		}
		t.err = t.secrets.Error(err)
	})
	return t.err
}
