package sql

import (
	"context"
	"fmt"
	"strings"

	"github.com/b2131a45/eventkit/transports/internal/errs"
)

// Exists reports whether topic's messages table (watermill-sql's default
// schema: watermill_<topic>) exists, for any consumer group (the table is a
// log every group reads). It only reads the catalog: PostgreSQL's
// to_regclass, which resolves the name on the search_path as the
// subscribers do, or MySQL's information_schema.tables of the current
// database. Nothing is created.
//
// It returns ErrNoGroup for an empty group, an error wrapping
// errs.ErrInvalidName for a name Subscribe would refuse, ErrClosed after
// Close, and the database's error otherwise, password redacted.
func (t *Transport) Exists(ctx context.Context, topic, group string) (bool, error) {
	if group == "" {
		return false, ErrNoGroup
	}
	if err := errs.CheckName("sql: consumer group", group); err != nil {
		return false, err
	}
	if err := validateTopic(topic); err != nil {
		if len(topic) > maxTopicLength {
			err = fmt.Errorf("%w: %w", errs.ErrInvalidName, err)
		}
		return false, err
	}
	if t.pub.isClosed() {
		return false, ErrClosed
	}
	cfg := t.cfg.withDefaults()
	schema, _ := cfg.adapters()
	// watermill-sql's name for the topic's table, quoted for the dialect:
	// "watermill_<topic>" or `watermill_<topic>`.
	quoted := schema.(interface{ MessagesTable(topic string) string }).MessagesTable(topic)
	var found bool
	var err error
	if cfg.Dialect == Postgres {
		err = t.db.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, quoted).Scan(&found)
	} else {
		err = t.db.QueryRowContext(ctx, `SELECT COUNT(*) > 0 FROM information_schema.tables
			WHERE table_schema = DATABASE() AND table_name = ?`, strings.Trim(quoted, "`")).Scan(&found)
	}
	if err != nil {
		return false, t.secrets.Error(fmt.Errorf("sql: look up table %s: %w", quoted, err))
	}
	return found, nil
}
