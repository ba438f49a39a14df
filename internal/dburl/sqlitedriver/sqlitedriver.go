// Package sqlitedriver links the SQLite driver of the CLI, the examples and
// the tests: github.com/ncruces/go-sqlite3 with its embedded Wasm build of
// SQLite, run by wazero. It is pure Go (no cgo) and cheap to build: SQLite
// is a 1.4 MB Wasm binary that wazero compiles to machine code once per
// process, at the first connection (about 0.6 s; about 6 s in a -race
// binary, where wazero's compiler runs instrumented), where
// modernc.org/sqlite is megabytes of generated Go (SQLite and its libc) that
// every cold build cache compiles again, in tens of seconds and 800 MB.
//
// Importing it registers the database/sql driver as "sqlite3" (the driver's
// own name) and as "sqlite" (the name of modernc.org/sqlite, which code and
// examples here use; a binary cannot link both). The data source names are
// those of modernc.org/sqlite:
//
//	file:app.db?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate
//
// Without _txlock, transactions begin IMMEDIATE (modernc.org/sqlite:
// DEFERRED); without any _pragma, the busy timeout is one minute.
//
// The version is held at v0.32.x, the last line that runs the Wasm build
// with wazero: from v0.33.0 on, SQLite comes translated to one 4.6 MB Go
// file, which costs as much to build as modernc.org/sqlite (and 1.3 GB of
// compiler memory).
package sqlitedriver

import (
	"database/sql"

	"github.com/ncruces/go-sqlite3/driver"
	_ "github.com/ncruces/go-sqlite3/embed" // the SQLite Wasm binary
)

// Name is the database/sql driver name to open SQLite databases with.
const Name = "sqlite"

func init() { sql.Register(Name, &driver.SQLite{}) }
