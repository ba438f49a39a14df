package sql

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/transports/internal/errs"
)

// DelayTableDefault is the default Config.DelayTable.
const DelayTableDefault = "eventkit_delayed"

// delayPollMax bounds how long an idle delayed subscription waits before it
// looks again: messages another process delays are seen within it.
const delayPollMax = time.Second

// delaySQL holds the statements of the delay table in one dialect.
type delaySQL struct {
	table                string
	setup                []string
	insert, claim, next  string
	remove, nowPrecision string
}

func delayStatements(d Dialect, table string) delaySQL {
	DelayTable := table
	if d == Postgres {
		return delaySQL{
			table: table,
			setup: []string{
				`CREATE TABLE IF NOT EXISTS ` + DelayTable + ` (
					id BIGSERIAL PRIMARY KEY,
					topic VARCHAR(255) NOT NULL,
					consumer_group VARCHAR(255) NOT NULL,
					uuid VARCHAR(255) NOT NULL,
					payload BYTEA,
					metadata TEXT NOT NULL,
					due_at TIMESTAMPTZ NOT NULL,
					created_at TIMESTAMPTZ NOT NULL DEFAULT now()
				)`,
				`CREATE INDEX IF NOT EXISTS ` + DelayTable + `_due ON ` + DelayTable + ` (topic, consumer_group, due_at, id)`,
			},
			insert: `INSERT INTO ` + DelayTable + ` (topic, consumer_group, uuid, payload, metadata, due_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			claim: `SELECT id, uuid, payload, metadata FROM ` + DelayTable + ` WHERE topic = $1 AND consumer_group = $2 AND due_at <= now()
				ORDER BY due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED`,
			next:   `SELECT MIN(due_at) FROM ` + DelayTable + ` WHERE topic = $1 AND consumer_group = $2`,
			remove: `DELETE FROM ` + DelayTable + ` WHERE id = $1`,
		}
	}
	return delaySQL{
		table: table,
		setup: []string{
			`CREATE TABLE IF NOT EXISTS ` + DelayTable + ` (
				id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
				topic VARCHAR(255) NOT NULL,
				consumer_group VARCHAR(255) NOT NULL,
				uuid VARCHAR(255) NOT NULL,
				payload LONGBLOB,
				metadata LONGTEXT NOT NULL,
				due_at DATETIME(6) NOT NULL,
				created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
				KEY ` + DelayTable + `_due (topic, consumer_group, due_at, id)
			) ENGINE=InnoDB`,
		},
		insert: `INSERT INTO ` + DelayTable + ` (topic, consumer_group, uuid, payload, metadata, due_at) VALUES (?, ?, ?, ?, ?, ?)`,
		claim: `SELECT id, uuid, payload, metadata FROM ` + DelayTable + ` WHERE topic = ? AND consumer_group = ? AND due_at <= UTC_TIMESTAMP(6)
			ORDER BY due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED`,
		next:   `SELECT MIN(due_at) FROM ` + DelayTable + ` WHERE topic = ? AND consumer_group = ?`,
		remove: `DELETE FROM ` + DelayTable + ` WHERE id = ?`,
	}
}

// delayReady records the delay tables this process made, by database.
var delayReady sync.Map // delayKey → struct{}

type delayKey struct {
	db    *sql.DB
	table string
}

// setupDelay creates the delay table, once per database and process. Two
// processes creating it at once can make PostgreSQL's IF NOT EXISTS fail
// (a unique violation in its catalog): it tries again.
func setupDelay(ctx context.Context, db *sql.DB, st delaySQL) error {
	key := delayKey{db, st.table}
	if _, ok := delayReady.Load(key); ok {
		return nil
	}
	var err error
	for attempt := range 3 {
		err = nil
		for _, q := range st.setup {
			if _, err = db.ExecContext(ctx, q); err != nil {
				break
			}
		}
		if err == nil {
			delayReady.Store(key, struct{}{})
			return nil
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
	return fmt.Errorf("sql: create %s: %w", st.table, err)
}

// Delay inserts msgs into Config.DelayTable for the consumer group group of topic,
// due after d, with events.KeyDeliverAt, in one transaction: when it
// returns nil they are committed. Every subscription of that group on topic
// (and only of that group) receives them once due, besides the topic's own
// messages, which never wait for them. A delayed message comes back after
// the messages published meanwhile. level is not used.
func (p *Publisher) Delay(topic, group string, _ int, d time.Duration, msgs ...*message.Message) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	if err := validateTopic(topic); err != nil {
		return err
	}
	if err := errs.CheckName("sql: consumer group", group); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	ctx := msgs[0].Context()
	if err := setupDelay(ctx, p.db, p.delay); err != nil {
		return err
	}
	due := time.Now().Add(d).UTC()
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sql: delay messages of %q: %w", topic, err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, m := range msgs {
		m.Metadata.Set(events.KeyDeliverAt, due.Format(time.RFC3339Nano))
		md, err := json.Marshal(m.Metadata)
		if err != nil {
			return fmt.Errorf("sql: delay message %s: %w", m.UUID, err)
		}
		if _, err := tx.ExecContext(ctx, p.delay.insert, topic, group, m.UUID, m.Payload, string(md), due); err != nil {
			return fmt.Errorf("sql: delay message %s of %q: %w", m.UUID, topic, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sql: delay messages of %q: %w", topic, err)
	}
	return nil
}

// DelayLevels reports that the SQL transport brings back any number of
// levels.
func (p *Publisher) DelayLevels() int { return 0 }

// consumeDelayed delivers the group's delayed messages of topic once due,
// one at a time, until ctx ends or the subscriber closes. Each is claimed in
// a transaction (FOR UPDATE SKIP LOCKED, so the group's subscriptions share
// them) that deletes it when it is acked and rolls back when it is nacked.
func (s *Subscriber) consumeDelayed(ctx context.Context, topic string, out chan<- *message.Message) {
	defer s.wg.Done()
	for {
		delivered, err := s.deliverDelayed(ctx, topic, out)
		if ctx.Err() != nil || s.isClosed() {
			return
		}
		if err != nil {
			s.cfg.Logger.Warn("sql: delayed messages", "topic", topic, "group", s.group, "err", err)
		}
		if delivered {
			continue
		}
		if !s.wait(ctx, s.untilNextDelayed(ctx, topic)) {
			return
		}
	}
}

// untilNextDelayed is how long to wait before the next delayed message is
// due: at most delayPollMax, at least PollInterval.
func (s *Subscriber) untilNextDelayed(ctx context.Context, topic string) time.Duration {
	var next sql.NullTime
	if err := s.db.QueryRowContext(ctx, s.delay.next, topic, s.group).Scan(&next); err != nil || !next.Valid {
		return delayPollMax
	}
	return min(max(time.Until(next.Time), s.cfg.PollInterval), delayPollMax)
}

// deliverDelayed hands out one due delayed message and settles it; false
// when none is due.
func (s *Subscriber) deliverDelayed(ctx context.Context, topic string, out chan<- *message.Message) (bool, error) {
	// The transaction outlives ctx (database/sql would roll it back when ctx
	// ends): a message acked as the subscription stops is still deleted.
	// The claim's own statement ends with ctx.
	tx, err := s.db.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback() }()
	var (
		id       int64
		uuid, md string
		payload  []byte
	)
	err = tx.QueryRowContext(ctx, s.delay.claim, topic, s.group).Scan(&id, &uuid, &payload, &md)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	msg := message.NewMessage(uuid, payload)
	if err := json.Unmarshal([]byte(md), &msg.Metadata); err != nil {
		return true, fmt.Errorf("delayed message %s: metadata: %w", uuid, err)
	}
	if msg.Metadata == nil {
		msg.Metadata = message.Metadata{}
	}
	_ = events.Canonicalize(msg)
	msgCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	msg.SetContext(msgCtx)
	select {
	case out <- msg:
	case <-ctx.Done():
		return false, nil
	case <-s.closing:
		return false, nil
	}
	select {
	case <-msg.Acked():
	case <-msg.Nacked():
		s.wait(ctx, s.cfg.ResendInterval)
		return true, nil
	case <-ctx.Done():
	case <-s.closing:
	}
	if !isAcked(msg) {
		return false, nil // stopped first
	}
	if _, err := tx.ExecContext(context.WithoutCancel(ctx), s.delay.remove, id); err != nil {
		return true, fmt.Errorf("delete acked delayed message %s: %w", uuid, err)
	}
	return true, tx.Commit()
}

// wait sleeps d unless ctx ends or the subscriber closes first.
func (s *Subscriber) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.closing:
		return false
	}
}

func (s *Subscriber) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// isAcked reports whether msg was acked: checked again when a stop came
// with the ack, since select picks at random among ready cases.
func isAcked(msg *message.Message) bool {
	select {
	case <-msg.Acked():
		return true
	default:
		return false
	}
}
