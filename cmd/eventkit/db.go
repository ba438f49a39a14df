package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/dburl"
)

// access is what a command does to the database.
type access int

const (
	// accessCreate may create the database (migrate: a new SQLite file).
	accessCreate access = iota
	// accessWrite changes rows of an existing database.
	accessWrite
	// accessRead changes nothing: SQLite is opened read-only.
	accessRead
)

// openDB opens the database of rawURL. A URL it cannot use is a usage
// error. For accessRead a SQLite file is opened read-only, without the
// journal_mode(WAL) that dburl sets (it would convert the file); whether it
// exists is checked by checkSQLiteFile, after the names were validated.
func openDB(rawURL string, a access) (*sql.DB, error) {
	if path, ok := sqlitePath(rawURL); ok && a == accessRead && path != "" {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		return sql.Open("sqlite", "file:"+path+sep+"mode=ro&_pragma=busy_timeout(10000)")
	}
	db, err := dburl.Open(rawURL)
	if err != nil {
		return nil, usagef("--db: %v", err)
	}
	return db, nil
}

// checkSQLiteFile fails when rawURL names a SQLite file that does not
// exist, so that only migrate creates one (SQLite creates a missing file
// when it opens it for writing).
func checkSQLiteFile(rawURL string) error {
	path, ok := sqlitePath(rawURL)
	if !ok {
		return nil
	}
	path, _, _ = strings.Cut(path, "?")
	path = strings.TrimPrefix(path, "file:")
	if path == "" || strings.HasPrefix(path, ":memory:") {
		return nil
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("SQLite database %s does not exist; nothing was created ('eventkit migrate' creates it)", path)
	}
	return nil
}

// sqlitePath is dburl's reading of a sqlite: URL.
func sqlitePath(rawURL string) (string, bool) {
	for _, prefix := range []string{"sqlite://", "sqlite:", "sqlite3://", "sqlite3:"} {
		if strings.HasPrefix(rawURL, prefix) {
			return strings.TrimPrefix(rawURL, prefix), true
		}
	}
	return "", false
}

// newOutbox returns the outbox called name in db; a bad name is a usage
// error.
func newOutbox(db *sql.DB, name string) (*forwarder.Outbox, error) {
	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: events.NewRegistry(), Name: name})
	if err != nil {
		return nil, usagef("--outbox: %v", err)
	}
	return ob, nil
}

// tableExists reports whether the (unquoted) table exists, reading only
// the catalog.
func tableExists(ctx context.Context, db *sql.DB, d forwarder.Dialect, table string) (bool, error) {
	var q string
	args := []any{table}
	switch d {
	case forwarder.Postgres:
		q, args = `SELECT to_regclass($1) IS NOT NULL`, []any{`"` + table + `"`}
	case forwarder.MySQL:
		q = `SELECT COUNT(*) > 0 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?`
	default:
		q = `SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?`
	}
	var found bool
	if err := db.QueryRowContext(ctx, q, args...).Scan(&found); err != nil {
		return false, fmt.Errorf("look up table %s: %w", table, err)
	}
	return found, nil
}
