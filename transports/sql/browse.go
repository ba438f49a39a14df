package sql

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/transports/internal/errs"
)

// Browse returns up to limit (0: all) of the messages the consumer group
// has yet to read on topic, in the order it reads them, with plain SELECTs:
// nothing is locked, consumed or created. The group's position is its row
// in watermill-sql's offsets table (none yet: from the start); on PostgreSQL
// only rows of transactions below the snapshot xmin are read, as the
// subscribers read them. A topic whose table does not exist is (nil, nil) —
// see Exists.
func (t *Transport) Browse(ctx context.Context, topic, group string, limit int) ([]*message.Message, error) {
	if group == "" {
		return nil, ErrNoGroup
	}
	if err := errs.CheckName("sql: consumer group", group); err != nil {
		return nil, err
	}
	if err := validateTopic(topic); err != nil {
		return nil, err
	}
	if t.pub.isClosed() {
		return nil, ErrClosed
	}
	if ok, err := t.Exists(ctx, topic, group); err != nil || !ok {
		return nil, err
	}
	from, order, args, err := t.unread(ctx, topic, group)
	if err != nil {
		return nil, err
	}
	query := `SELECT ` + t.col("uuid") + `, ` + t.col("payload") + `, ` + t.col("metadata") + from + order
	if limit > 0 {
		query += fmt.Sprint(" LIMIT ", limit)
	}
	rows, err := t.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, t.secrets.Error(fmt.Errorf("sql: browse %q: %w", topic, err))
	}
	defer rows.Close()
	var out []*message.Message
	for rows.Next() {
		var uuid string
		var payload, md []byte
		if err := rows.Scan(&uuid, &payload, &md); err != nil {
			return nil, t.secrets.Error(fmt.Errorf("sql: browse %q: %w", topic, err))
		}
		m := message.NewMessage(uuid, payload)
		if len(md) > 0 {
			if err := json.Unmarshal(md, &m.Metadata); err != nil {
				return nil, fmt.Errorf("sql: browse %q: metadata of message %s: %w", topic, uuid, err)
			}
		}
		if m.Metadata == nil {
			m.Metadata = message.Metadata{}
		}
		_ = events.Canonicalize(m)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, t.secrets.Error(fmt.Errorf("sql: browse %q: %w", topic, err))
	}
	return out, nil
}

// unread returns the FROM … WHERE clause, the ORDER BY clause and the
// arguments of the rows the consumer group has yet to read on topic, in the order it
// reads them: after its row in watermill-sql's offsets table (none yet: from
// the start), on PostgreSQL only rows of transactions below the snapshot
// xmin, as the subscribers read them.
func (t *Transport) unread(ctx context.Context, topic, group string) (from, order string, args []any, err error) {
	if t.cfg.withDefaults().Dialect == Postgres {
		msgs := wmsql.DefaultPostgreSQLSchema{}.MessagesTable(topic)
		offsets := wmsql.DefaultPostgreSQLOffsetsAdapter{}.MessagesOffsetsTable(topic)
		tx, off := "0", int64(0)
		err = t.db.QueryRowContext(ctx, `SELECT last_processed_transaction_id::text, COALESCE(offset_acked, 0) FROM `+offsets+
			` WHERE consumer_group = $1`, group).Scan(&tx, &off)
		if err != nil && err != sql.ErrNoRows && !strings.Contains(err.Error(), "does not exist") {
			return "", "", nil, t.secrets.Error(fmt.Errorf("sql: read the offset of group %q on %q: %w", group, topic, err))
		}
		return ` FROM ` + msgs + `
			WHERE ("transaction_id", "offset") > ($1::text::xid8, $2) AND "transaction_id" < pg_snapshot_xmin(pg_current_snapshot())`,
			` ORDER BY "transaction_id", "offset"`, []any{tx, off}, nil
	}
	msgs := wmsql.DefaultMySQLSchema{}.MessagesTable(topic)
	offsets := wmsql.DefaultMySQLOffsetsAdapter{}.MessagesOffsetsTable(topic)
	var off int64
	err = t.db.QueryRowContext(ctx, "SELECT COALESCE(offset_acked, 0) FROM "+offsets+" WHERE consumer_group = ?", group).Scan(&off)
	if err != nil && err != sql.ErrNoRows && !strings.Contains(err.Error(), "doesn't exist") {
		return "", "", nil, t.secrets.Error(fmt.Errorf("sql: read the offset of group %q on %q: %w", group, topic, err))
	}
	return " FROM " + msgs + " WHERE `offset` > ?", " ORDER BY `offset`", []any{off}, nil
}

// col quotes a column name for the dialect.
func (t *Transport) col(c string) string {
	if t.cfg.withDefaults().Dialect == Postgres {
		return `"` + c + `"`
	}
	return "`" + c + "`"
}
