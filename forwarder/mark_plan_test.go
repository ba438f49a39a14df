package forwarder

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/b2131a45/eventkit/internal/testenv"
)

// The statement marking (or deleting) a batch on PostgreSQL finds its rows
// through the pending index, one by one, on a table of 20,000 rows: joined
// with the batch's unnest directly, the planner hashed the whole table for
// every batch, twice the time of the index probes, and more as the table
// of published rows grows.
func TestMarkPublished_PostgresProbesThePendingIndex(t *testing.T) {
	t.Parallel()
	db, s, rs := markTable(t, "markplan", 0, 20_000, true)
	ctx := context.Background()
	for _, del := range []bool{false, true} {
		stmt, args := s.markPublished(rs, 0, del)
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		plan := explain(t, tx, stmt, args)
		res, err := tx.ExecContext(ctx, stmt, args...)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := res.RowsAffected()
		_ = tx.Rollback()
		if n != int64(len(rs)) {
			t.Errorf("delete %v: %d rows changed, want %d", del, n, len(rs))
		}
		if strings.Contains(plan, "Hash") || strings.Contains(plan, "Seq Scan") {
			t.Errorf("delete %v: the plan scans the table:\n%s", del, plan)
		}
	}
}

// The relay's check for pending rows after an empty read goes through the
// pending index even when the statistics count every row pending (a table
// analyzed while its rows waited): an EXISTS was planned as a sequential
// scan, which reads every published row before the first pending one.
func TestHeld_PostgresUsesThePendingIndex(t *testing.T) {
	t.Parallel()
	db, s, _ := markTable(t, "heldplan", 0, 20_000, true)
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	// All but the last row published since the statistics were taken.
	if _, err := tx.ExecContext(ctx, `UPDATE `+s.table+` SET "status" = 1 WHERE "offset" < 20000`); err != nil {
		t.Fatal(err)
	}
	var held bool
	if err := tx.QueryRowContext(ctx, s.held).Scan(&held); err != nil {
		t.Fatal(err)
	}
	if !held {
		t.Error("held = false with one row pending")
	}
	if plan := explain(t, tx, s.held, nil); strings.Contains(plan, "Seq Scan") || !strings.Contains(plan, "_pending") {
		t.Errorf("the plan does not read the pending index:\n%s", plan)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE `+s.table+` SET "status" = 1`); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRowContext(ctx, s.held).Scan(&held); err != nil {
		t.Fatal(err)
	}
	if held {
		t.Error("held = true with no row pending")
	}
}

func explain(t *testing.T, tx *sql.Tx, stmt string, args []any) string {
	t.Helper()
	rows, err := tx.Query("EXPLAIN "+stmt, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// markTable makes an outbox table named name of published rows (status 1)
// followed by pending ones, and returns the first 1,000 pending rows, a
// batch to mark.
func markTable(tb testing.TB, name string, published, pending int, analyze bool) (*sql.DB, schema, []*row) {
	tb.Helper()
	db, err := sql.Open("pgx", testenv.PostgresSchema(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	ctx := context.Background()
	s := newSchema(Postgres, name)
	for _, q := range s.setup {
		if _, err := db.ExecContext(ctx, q); err != nil {
			testenv.Unavailable(tb, "PostgreSQL", err)
		}
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO `+s.table+` ("uuid", "payload", "metadata", "status")
		SELECT md5(i::text), '{"order_id":"o"}', '{"name":"orders.order_created"}', CASE WHEN i <= $1::int THEN 1 ELSE 0 END
		FROM generate_series(1, $1::int + $2::int) AS i`, published, pending); err != nil {
		tb.Fatal(err)
	}
	if analyze {
		if _, err := db.ExecContext(ctx, `ANALYZE `+s.table); err != nil {
			tb.Fatal(err)
		}
	}
	q, err := db.QueryContext(ctx, `SELECT "offset", "transaction_id"::text FROM `+s.table+` WHERE "status" = 0 ORDER BY "offset" LIMIT 1000`)
	if err != nil {
		tb.Fatal(err)
	}
	defer q.Close()
	var rs []*row
	for q.Next() {
		r := &row{}
		if err := q.Scan(&r.offset, &r.xid); err != nil {
			tb.Fatal(err)
		}
		rs = append(rs, r)
	}
	if err := q.Err(); err != nil {
		tb.Fatal(err)
	}
	return db, s, rs
}
