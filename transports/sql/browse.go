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
	cfg := t.cfg.withDefaults()
	max := "ALL"
	if limit > 0 {
		max = fmt.Sprint(limit)
	}
	var query string
	var args []any
	if cfg.Dialect == Postgres {
		msgs := wmsql.DefaultPostgreSQLSchema{}.MessagesTable(topic)
		offsets := wmsql.DefaultPostgreSQLOffsetsAdapter{}.MessagesOffsetsTable(topic)
		tx, off := "0", int64(0)
		err := t.db.QueryRowContext(ctx, `SELECT last_processed_transaction_id::text, COALESCE(offset_acked, 0) FROM `+offsets+
			` WHERE consumer_group = $1`, group).Scan(&tx, &off)
		if err != nil && err != sql.ErrNoRows && !strings.Contains(err.Error(), "does not exist") {
			return nil, t.secrets.Error(fmt.Errorf("sql: read the offset of group %q on %q: %w", group, topic, err))
		}
		query = `SELECT "uuid", "payload", "metadata" FROM ` + msgs + `
			WHERE ("transaction_id", "offset") > ($1::text::xid8, $2) AND "transaction_id" < pg_snapshot_xmin(pg_current_snapshot())
			ORDER BY "transaction_id", "offset" LIMIT ` + max
		args = []any{tx, off}
	} else {
		msgs := wmsql.DefaultMySQLSchema{}.MessagesTable(topic)
		offsets := wmsql.DefaultMySQLOffsetsAdapter{}.MessagesOffsetsTable(topic)
		var off int64
		err := t.db.QueryRowContext(ctx, "SELECT COALESCE(offset_acked, 0) FROM "+offsets+" WHERE consumer_group = ?", group).Scan(&off)
		if err != nil && err != sql.ErrNoRows && !strings.Contains(err.Error(), "doesn't exist") {
			return nil, t.secrets.Error(fmt.Errorf("sql: read the offset of group %q on %q: %w", group, topic, err))
		}
		if limit == 0 {
			max = "18446744073709551615" // MySQL has no LIMIT ALL
		}
		query = "SELECT `uuid`, `payload`, `metadata` FROM " + msgs + " WHERE `offset` > ? ORDER BY `offset` LIMIT " + max
		args = []any{off}
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
