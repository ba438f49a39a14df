package sql

import (
	"database/sql"
	"fmt"
	"sync"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/transports/internal/errs"
	"github.com/b2131a45/eventkit/transports/internal/wmlog"
)

// ErrClosed is returned after Close.
var ErrClosed = errs.ErrClosed

// maxTopicLength keeps "watermill_offsets_" + topic within PostgreSQL's
// 63-byte identifiers (MySQL allows 64).
const maxTopicLength = 63 - len("watermill_offsets_")

// Publisher inserts messages into topic tables. It is safe for concurrent
// use.
type Publisher struct {
	pub   *wmsql.Publisher
	db    *sql.DB
	delay delaySQL

	mu     sync.RWMutex // held for reading by Publish, for writing by Close
	closed bool
}

// NewPublisher returns a publisher writing through db, which it does not
// close. Topic tables are created on first publish.
func NewPublisher(db *sql.DB, cfg Config) (*Publisher, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if db == nil {
		return nil, fmt.Errorf("sql: db is nil")
	}
	cfg = cfg.withDefaults()
	schema, _ := cfg.adapters()
	pub, err := wmsql.NewPublisher(wmsql.BeginnerFromStdSQL(db), wmsql.PublisherConfig{
		SchemaAdapter:        schema,
		AutoInitializeSchema: true,
	}, wmlog.Adapter(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("sql: %w", err)
	}
	return &Publisher{pub: pub, db: db, delay: delayStatements(cfg.Dialect, cfg.DelayTable)}, nil
}

// Publish inserts msgs into the topic's table in one statement, bound by
// the first message's context. When it returns nil the messages are
// committed. It returns ErrClosed after Close.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	if err := validateTopic(topic); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := p.pub.Publish(topic, msgs...); err != nil {
		return fmt.Errorf("sql: publish to %q: %w", topic, err)
	}
	return nil
}

// Close waits for the Publish calls in flight. It is safe to call more than
// once.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	return p.pub.Close()
}

func validateTopic(topic string) error {
	if topic == "" {
		return fmt.Errorf("sql: topic name is empty")
	}
	if err := errs.CheckName("sql: topic", topic); err != nil {
		// Also watermill-sql's sentinel, which callers may test for.
		return fmt.Errorf("%w (%w)", err, wmsql.ErrInvalidTopicName)
	}
	if len(topic) > maxTopicLength {
		return fmt.Errorf("sql: topic %q is longer than %d characters, too long for its table names", topic, maxTopicLength)
	}
	return nil
}

var _ message.Publisher = (*Publisher)(nil)

func (p *Publisher) isClosed() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.closed
}
