// Package dburl opens the database a URL names, for the CLI and the examples:
//
//	postgres://user:password@host:port/database?sslmode=...   (also postgresql://)
//	mysql://user:password@host:port/database
//	sqlite:path/to/file.db                                     (also sqlite://path, sqlite::memory:)
//
// Errors never contain the password.
package dburl

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/b2131a45/eventkit/internal/dburl/sqlitedriver"
	tsql "github.com/b2131a45/eventkit/transports/sql"
)

// SQLiteOptions are the connection settings Open gives SQLite: wait up to
// 10 s for the single writer, take the write lock at BEGIN (so concurrent
// writers queue instead of failing), WAL journal.
const SQLiteOptions = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"

// Open returns a connection pool for the database rawURL names. It does not
// connect yet; the caller owns and closes the pool.
func Open(rawURL string) (*sql.DB, error) {
	if path, ok := sqlitePath(rawURL); ok {
		if path == "" {
			return nil, errors.New("database URL: missing SQLite file path: want sqlite:path/to/file.db")
		}
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		return sql.Open(sqlitedriver.Name, "file:"+path+sep+SQLiteOptions)
	}
	src, err := tsql.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w (want postgres://, mysql:// or sqlite:)", err)
	}
	return src.OpenDB()
}

func sqlitePath(rawURL string) (string, bool) {
	for _, prefix := range []string{"sqlite://", "sqlite:", "sqlite3://", "sqlite3:"} {
		if strings.HasPrefix(rawURL, prefix) {
			return strings.TrimPrefix(rawURL, prefix), true
		}
	}
	return "", false
}
