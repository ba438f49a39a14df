package sql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/transports/internal/errs"
	"github.com/b2131a45/eventkit/transports/internal/wmlog"
)

// ErrNoGroup is returned for an empty consumer group name.
var ErrNoGroup = errs.ErrNoGroup

// Subscriber reads topic tables as one consumer group. It is safe for
// concurrent use.
type Subscriber struct {
	sub   *wmsql.Subscriber
	db    *sql.DB
	cfg   Config
	group string
	delay delaySQL

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

// NewSubscriber returns a subscriber of the consumer group reading through
// db, which it does not close. Topic and offsets tables are created on
// first use.
func NewSubscriber(db *sql.DB, cfg Config, group string) (*Subscriber, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if db == nil {
		return nil, fmt.Errorf("sql: db is nil")
	}
	if group == "" {
		return nil, ErrNoGroup
	}
	if err := errs.CheckName("sql: consumer group", group); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	schema, offsets := cfg.adapters()
	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(db), wmsql.SubscriberConfig{
		ConsumerGroup:    group,
		AckDeadline:      &cfg.AckDeadline,
		PollInterval:     cfg.PollInterval,
		ResendInterval:   cfg.ResendInterval,
		RetryInterval:    cfg.PollInterval,
		SchemaAdapter:    schema,
		OffsetsAdapter:   offsets,
		InitializeSchema: false, // Subscribe does it, before the offsets row
	}, wmlog.Adapter(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("sql: %w", err)
	}
	return &Subscriber{sub: sub, db: db, cfg: cfg, group: group, delay: delayStatements(cfg.Dialect, cfg.DelayTable), closing: make(chan struct{})}, nil
}

// Subscribe creates the topic's tables (and DelayTable) if needed and
// delivers the group's messages on the returned channel: the topic's, one
// at a time, and, beside them, the messages delayed for the group
// (Publisher.Delay) once due. The channel closes when ctx ends or the
// subscriber closes.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if err := s.SubscribeInitialize(topic); err != nil {
		return nil, err
	}
	if err := s.ensureOffsetsRow(ctx, topic); err != nil {
		return nil, err
	}
	if err := setupDelay(ctx, s.db, s.delay); err != nil {
		return nil, err
	}
	in, err := s.sub.Subscribe(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("sql: subscribe to %q: %w", topic, err)
	}
	out := make(chan *message.Message)
	var feeds sync.WaitGroup
	feeds.Add(2)
	s.wg.Add(3)
	go func() { defer feeds.Done(); s.forward(ctx, in, out) }()
	go func() { defer feeds.Done(); s.consumeDelayed(ctx, topic, out) }()
	go func() { defer s.wg.Done(); feeds.Wait(); close(out) }()
	return out, nil
}

// ensureOffsetsRow gives a new MySQL group its zero offset, as
// watermill-sql does for PostgreSQL. Without that row, the FOR UPDATE with
// which a subscription reads its offset locks a gap of the offsets table
// instead of a row, and under SERIALIZABLE that gap lock keeps every other
// new group of the topic waiting until the first one has acked its whole
// batch. The row means the same as no row (offset 0), so stock watermill-sql
// subscribers read the table as before. The insert runs only when the row is
// missing: an INSERT IGNORE of an existing row would wait for the row lock
// of a running subscription of the group.
func (s *Subscriber) ensureOffsetsRow(ctx context.Context, topic string) error {
	if s.cfg.Dialect != MySQL {
		return nil // watermill-sql inserts it before subscribing
	}
	table := wmsql.DefaultMySQLOffsetsAdapter{}.MessagesOffsetsTable(topic)
	var exists int
	err := s.db.QueryRowContext(ctx, "SELECT 1 FROM "+table+" WHERE consumer_group = ?", s.group).Scan(&exists)
	if !errors.Is(err, sql.ErrNoRows) {
		if err != nil {
			return fmt.Errorf("sql: read offset of group %q on %q: %w", s.group, topic, err)
		}
		return nil
	}
	_, err = s.db.ExecContext(ctx, "INSERT IGNORE INTO "+table+" (consumer_group, offset_acked, offset_consumed) VALUES (?, 0, 0)", s.group)
	if err != nil {
		return fmt.Errorf("sql: insert offset of group %q on %q: %w", s.group, topic, err)
	}
	return nil
}

// forward passes watermill-sql's messages on. It exists so that the
// channel is closed by the time Close returns: watermill-sql closes its
// own only after its Close has returned.
func (s *Subscriber) forward(ctx context.Context, in <-chan *message.Message, out chan<- *message.Message) {
	defer s.wg.Done()
	for msg := range in {
		_ = events.Canonicalize(msg) // a message in CloudEvents form; an error is the registry's to report
		// A message not handed over is not acked: watermill-sql, which
		// stops on the same ctx and Close, delivers it again later.
		select {
		case out <- msg:
		case <-ctx.Done():
		case <-s.closing:
		}
	}
}

// SubscribeInitialize creates the topic's tables if they do not exist.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	if err := validateTopic(topic); err != nil {
		return err
	}
	if err := s.sub.SubscribeInitialize(topic); err != nil {
		return fmt.Errorf("sql: create tables of topic %q: %w", topic, err)
	}
	return nil
}

// Close stops the subscriptions and waits for them. It is safe to call
// more than once.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	err := s.sub.Close()
	s.wg.Wait()
	return err
}

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)
