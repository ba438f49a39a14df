package main

import (
	"database/sql"
	"strings"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/middleware"
)

const inboxTableDefault = middleware.InboxTableDefault

// newInbox returns the SQL inbox of db's dialect.
func newInbox(db *sql.DB, table string) (*middleware.SQLInbox, error) {
	// The outbox detects the dialect from the driver; reuse it.
	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: events.NewRegistry()})
	if err != nil {
		return nil, err
	}
	cfg := middleware.InboxConfig{Table: table}
	switch ob.Dialect() {
	case forwarder.Postgres:
		return middleware.NewPostgresInbox(db, cfg)
	case forwarder.MySQL:
		return middleware.NewMySQLInbox(db, cfg)
	default:
		return middleware.NewSQLiteInbox(db, cfg)
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
