package testenv

import (
	"context"
	"database/sql"
	"net/url"
	"testing"
	"time"
)

// PostgresSchema creates a PostgreSQL schema of the test's own (a Name with
// prefix, so Main sweeps it if the test's cleanup does not run), dropped
// with everything in it when the test ends, and returns PostgresURL with
// search_path set to it: the fixed table names of the sample services
// (orders, watermill_orders_outbox…), and their relays' locks, are then
// the test's alone. It calls Unavailable when PostgreSQL is unreachable.
func PostgresSchema(t testing.TB, prefix string) string {
	t.Helper()
	db, err := sql.Open("pgx", PostgresURL())
	if err != nil {
		t.Fatalf("EVENTKIT_POSTGRES_URL: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		Unavailable(t, "PostgreSQL", err)
	}
	schema := Name(t, prefix)
	if _, err := db.ExecContext(ctx, `CREATE SCHEMA `+pgIdent(schema)); err != nil {
		_ = db.Close()
		t.Fatalf("create the test's schema: %v", err)
	}
	t.Cleanup(func() {
		defer db.Close()
		if _, err := db.Exec(`DROP SCHEMA ` + pgIdent(schema) + ` CASCADE`); err != nil {
			t.Errorf("drop the test's schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(PostgresURL())
	if err != nil {
		t.Fatalf("EVENTKIT_POSTGRES_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
