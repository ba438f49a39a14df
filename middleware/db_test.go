package middleware_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	_ "github.com/b2131a45/eventkit/internal/dburl/sqlitedriver"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
)

// mysqlDSN turns testenv's mysql:// URL into a go-sql-driver DSN, unless
// EVENTKIT_MYSQL_DSN gives one.
func mysqlDSN(t testing.TB) string {
	if dsn := os.Getenv("EVENTKIT_MYSQL_DSN"); dsn != "" {
		return dsn
	}
	u, err := url.Parse(testenv.MySQLURL())
	require.NoError(t, err)
	return fmt.Sprintf("%s@tcp(%s)%s?parseTime=true", u.User.String(), u.Host, u.Path)
}

func openDB(t testing.TB, service, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	if driver == "sqlite" {
		// SQLite is embedded: it cannot be down, and its first connection
		// compiles the Wasm build of SQLite, which takes several seconds
		// under the race detector. No deadline, and any error is a failure.
		require.NoError(t, db.Ping(), "open SQLite")
		return db
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		testenv.Unavailable(t, service, err)
	}
	return db
}

// sqlBackend is one SQL database the inbox runs on in tests.
type sqlBackend struct {
	name string
	open func(t testing.TB) *sql.DB
	new  func(db *sql.DB, cfg middleware.InboxConfig) (*middleware.SQLInbox, error)
	// bind rewrites ? placeholders for the dialect.
	bind func(q string) string
}

func noBind(q string) string { return q }

func pgBind(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

var sqlBackends = []sqlBackend{
	{
		name: "postgres",
		open: func(t testing.TB) *sql.DB { return openDB(t, "PostgreSQL", "pgx", testenv.PostgresURL()) },
		new:  middleware.NewPostgresInbox,
		bind: pgBind,
	},
	{
		name: "mysql",
		open: func(t testing.TB) *sql.DB { return openDB(t, "MariaDB", "mysql", mysqlDSN(t)) },
		new:  middleware.NewMySQLInbox,
		bind: noBind,
	},
	{
		name: "sqlite",
		open: func(t testing.TB) *sql.DB {
			path := filepath.Join(t.TempDir(), "inbox.db")
			return openDB(t, "SQLite", "sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
		},
		new:  middleware.NewSQLiteInbox,
		bind: noBind,
	},
}

// newSQLInbox opens the backend and sets up an inbox in a table of its own,
// dropped at cleanup.
func newSQLInbox(t testing.TB, b sqlBackend, cfg middleware.InboxConfig) (*middleware.SQLInbox, *sql.DB) {
	t.Helper()
	db := b.open(t)
	if cfg.Table == "" {
		cfg.Table = testenv.Name(t, "inbox")
	}
	inbox, err := b.new(db, cfg)
	require.NoError(t, err)
	require.NoError(t, inbox.Setup(context.Background()))
	t.Cleanup(func() { _, _ = db.Exec("DROP TABLE IF EXISTS " + inbox.Table()) })
	return inbox, db
}

// createTable makes a table for a test's business writes, dropped at cleanup.
func createTable(t testing.TB, db *sql.DB, ddl string) string {
	t.Helper()
	name := testenv.Name(t, "biz")
	_, err := db.Exec(fmt.Sprintf(ddl, name))
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = db.Exec("DROP TABLE IF EXISTS " + name) })
	return name
}

// sqlDBPlaceholder is a *sql.DB that is never used: constructors only keep it.
var sqlDBPlaceholder sql.DB
