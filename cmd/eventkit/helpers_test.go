package main

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/dburl"
	"github.com/b2131a45/eventkit/internal/kafkatest"
	"github.com/b2131a45/eventkit/internal/testenv"
)

// database is one SQL database the outbox commands run against.
type database struct {
	name    string
	db      *sql.DB
	url     string
	dialect forwarder.Dialect
}

// databases are PostgreSQL, MySQL and a SQLite file of the test's own;
// open returns one reachable or skips the test (a failure under CI).
var databases = []struct {
	name string
	open func(t *testing.T) database
}{
	{"postgres", func(t *testing.T) database {
		db, url := postgres(t)
		return database{"postgres", db, url, forwarder.Postgres}
	}},
	{"mysql", func(t *testing.T) database {
		db, url := mysql(t)
		return database{"mysql", db, url, forwarder.MySQL}
	}},
	{"sqlite", func(t *testing.T) database {
		url := "sqlite:" + filepath.Join(t.TempDir(), "eventkit.db") // removed with the directory
		db, err := dburl.Open(url)
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		return database{"sqlite", db, url, forwarder.SQLite}
	}},
}

func postgres(t *testing.T) (*sql.DB, string) {
	t.Helper()
	return openService(t, "PostgreSQL", testenv.PostgresURL())
}

func mysql(t *testing.T) (*sql.DB, string) {
	t.Helper()
	return openService(t, "MySQL", testenv.MySQLURL())
}

func openService(t *testing.T, service, url string) (*sql.DB, string) {
	t.Helper()
	db, err := dburl.Open(url)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		testenv.Unavailable(t, service, err)
	}
	return db, url
}

// quote quotes a table name for the dialect.
func quote(d forwarder.Dialect, table string) string {
	if d == forwarder.MySQL {
		return "`" + table + "`"
	}
	return `"` + table + `"`
}

// dropTables drops the tables when the test ends.
func dropTables(t *testing.T, db *sql.DB, d forwarder.Dialect, tables ...string) {
	t.Cleanup(func() {
		for _, tbl := range tables {
			_, err := db.Exec(`DROP TABLE IF EXISTS ` + quote(d, tbl))
			assert.NoError(t, err)
		}
	})
}

// dropOutbox drops what migrate makes of the outbox (Outbox.Drop: its
// tables and, on PostgreSQL, its notify function) and the other tables
// when the test ends.
func dropOutbox(t *testing.T, d database, outbox string, tables ...string) {
	dropTables(t, d.db, d.dialect, tables...)
	t.Cleanup(func() {
		ob, err := forwarder.NewOutbox(d.db, forwarder.OutboxConfig{Registry: events.NewRegistry(), Name: outbox})
		if assert.NoError(t, err) {
			assert.NoError(t, ob.Drop(context.Background()))
		}
	})
}

// tablesLike returns the tables of the current schema whose name contains
// part.
func tablesLike(t *testing.T, d database, part string) []string {
	t.Helper()
	q := `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND strpos(table_name, $1) > 0`
	switch d.dialect {
	case forwarder.MySQL:
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND INSTR(table_name, ?) > 0`
	case forwarder.SQLite:
		q = `SELECT name FROM sqlite_master WHERE type = 'table' AND instr(name, ?) > 0`
	}
	rows, err := d.db.Query(q, part)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		out = append(out, n)
	}
	require.NoError(t, rows.Err())
	return out
}

// dump returns every row of the table, as text, in a stable order.
func dump(t *testing.T, d database, table string) []string {
	t.Helper()
	rows, err := d.db.Query(`SELECT * FROM ` + quote(d.dialect, table))
	require.NoError(t, err)
	defer rows.Close()
	cols, err := rows.Columns()
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		var b strings.Builder
		for _, v := range vals {
			b.WriteString(string(v) + "|")
		}
		out = append(out, b.String())
	}
	require.NoError(t, rows.Err())
	slices.Sort(out)
	return out
}

// rabbitmq returns a connection to the shared RabbitMQ, or skips.
func rabbitmq(t *testing.T) (*amqp091.Connection, string) {
	t.Helper()
	url := testenv.AMQPURL()
	conn, err := amqp091.Dial(url)
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, url
}

// deleteAMQP deletes the queues, then the exchanges, when the test ends
// (those that do not exist are skipped).
func deleteAMQP(t *testing.T, conn *amqp091.Connection, queues, exchanges []string) {
	t.Cleanup(func() {
		ch, err := conn.Channel()
		if !assert.NoError(t, err) {
			return
		}
		defer ch.Close()
		for _, q := range queues {
			if queueExists(t, conn, q) {
				_, err := ch.QueueDelete(q, false, false, false)
				assert.NoError(t, err)
			}
		}
		for _, x := range exchanges {
			if exchangeExists(t, conn, x) {
				assert.NoError(t, ch.ExchangeDelete(x, false, false))
			}
		}
	})
}

// exists runs a passive declare on a channel of its own: false when the
// broker does not know the queue or exchange.
func exists(t *testing.T, conn *amqp091.Connection, declare func(*amqp091.Channel) error) bool {
	t.Helper()
	ch, err := conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	err = declare(ch)
	var ae *amqp091.Error
	if errors.As(err, &ae) && ae.Code == amqp091.NotFound {
		return false
	}
	require.NoError(t, err)
	return true
}

func queueExists(t *testing.T, conn *amqp091.Connection, q string) bool {
	t.Helper()
	return exists(t, conn, func(ch *amqp091.Channel) error {
		_, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		return err
	})
}

func exchangeExists(t *testing.T, conn *amqp091.Connection, x string) bool {
	t.Helper()
	return exists(t, conn, func(ch *amqp091.Channel) error {
		return ch.ExchangeDeclarePassive(x, amqp091.ExchangeFanout, true, false, false, false, nil)
	})
}

// kafka starts a kfake cluster (closed when the test ends), which creates
// topics on demand as a careless client would make it, and returns its URL
// and a franz-go client to look at it.
func kafka(t *testing.T) (string, *kgo.Client) {
	t.Helper()
	addrs := kafkatest.Cluster(t).ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return "kafka://" + strings.Join(addrs, ",") + "?heartbeat_interval=100ms&session_timeout=1s", cl
}

// kafkaTopics lists the cluster's topics, creating none.
func kafkaTopics(t *testing.T, cl *kgo.Client) []string {
	t.Helper()
	resp, err := kmsg.NewPtrMetadataRequest().RequestWith(context.Background(), cl)
	require.NoError(t, err)
	var out []string
	for _, tp := range resp.Topics {
		out = append(out, *tp.Topic)
	}
	return out
}

// withParam adds a query parameter to a URL.
func withParam(url, kv string) string {
	if strings.Contains(url, "?") {
		return url + "&" + kv
	}
	return url + "?" + kv
}
