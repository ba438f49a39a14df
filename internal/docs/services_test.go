package docs

import (
	"context"
	"database/sql"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/dburl"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports"
)

// sqliteDB opens a SQLite file of the test's own (removed with its
// directory), as the CLI and the examples open one.
func sqliteDB(t *testing.T) (*sql.DB, string) {
	t.Helper()
	u := "sqlite:" + filepath.Join(t.TempDir(), "docs.db")
	db, err := dburl.Open(u)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	// The first SQLite connection of a process compiles SQLite's Wasm
	// build (several seconds under -race on a loaded machine): done here,
	// with no deadline, not inside a test's timed context.
	require.NoError(t, db.Ping(), "open SQLite")
	return db, u
}

// postgresSchema creates a PostgreSQL schema of the test's own, dropped
// with everything in it when the test ends, and returns a pool whose
// search_path is that schema and its URL (testenv.PostgresURL with
// ?search_path=): fixed table names (orders, watermill_orders_outbox…) are
// then the test's alone.
func postgresSchema(t *testing.T) (*sql.DB, string) {
	t.Helper()
	admin, err := dburl.Open(testenv.PostgresURL())
	require.NoError(t, err)
	t.Cleanup(func() { admin.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		testenv.Unavailable(t, "PostgreSQL", err)
	}
	schema := testenv.Name(t, "docs")
	_, err = admin.ExecContext(ctx, `CREATE SCHEMA `+schema)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
		require.NoError(t, err)
	})
	u, err := url.Parse(testenv.PostgresURL())
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	db, err := dburl.Open(u.String())
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db, u.String()
}

// memTransport opens a mem:// transport, closed when the test ends.
func memTransport(t *testing.T) *transports.Transport {
	t.Helper()
	tr, err := transports.Open(context.Background(), "mem://")
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	return tr
}
