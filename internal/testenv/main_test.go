package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { Main(m) }

func TestOwned(t *testing.T) {
	t.Parallel()
	names := []string{"tt_publish_subscribe_0b89a4ab", "u_83698758564c4e9da9a1db400b828330"}
	for object, want := range map[string]bool{
		"tt_publish_subscribe_0b89a4ab":                          true,
		"watermill_tt_publish_subscribe_0b89a4ab":                true,
		"watermill_offsets_tt_publish_subscribe_0b89a4ab":        true,
		"tt_publish_subscribe_0b89a4ab_g.delay-10s":              true,
		"tt_publish_subscribe_0b89a4ab.dlq_eventkit-dlq":         true,
		"watermill_u_83698758564c4e9da9a1db400b828330-7":         true,
		"tt_publish_subscribe_0b89a4ac":                          false,
		"publish_subscribe_0b89a4ab":                             false,
		"eventkit_delayed":                                       false,
		"orders.order_created_inventory.reserve-stock":           false,
		"watermill_u_83698758564c4e9da9a1db400b82833":            false,
		"cli_estdlqcommandsonrabbitmq_1301c450.dlq_eventkit-dlq": false,
	} {
		assert.Equal(t, want, owned(object, names), object)
	}
	assert.False(t, owned("anything", nil))
}

func TestTrack(t *testing.T) {
	t.Parallel()
	n := Name(t, "track")
	assert.Contains(t, trackedNames(), n)
	assert.Equal(t, "topic-0123", Track("topic-0123"))
	assert.Panics(t, func() { Track("g") }, "a short name would match other processes' objects")
}

func TestWithDelayTable(t *testing.T) {
	t.Parallel()
	u := WithDelayTable(t, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	assert.Contains(t, u, "sslmode=disable")
	assert.Regexp(t, `[?&]delay_table=delayed_testwithdelaytable_[0-9a-f]{8}(&|$)`, u)
}

func TestMySQLConfig(t *testing.T) {
	t.Parallel()
	cfg, err := mysqlConfig("mysql://app:s3cret@db/events")
	require.NoError(t, err)
	assert.Equal(t, "app", cfg.User)
	assert.Equal(t, "s3cret", cfg.Passwd)
	assert.Equal(t, "db:3306", cfg.Addr)
	assert.Equal(t, "events", cfg.DBName)
	cfg, err = mysqlConfig("mysql://root@127.0.0.1:3307/test")
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:3307", cfg.Addr)
}

// TestSweep makes, on each service, an object named after a recorded name
// and one named after a name of nobody's, sweeps, and finds the first
// gone and the second still there.
func TestSweep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mine := "sweep_" + randomHex() // recorded by sweep's argument only
	other := "sweep_" + randomHex()

	pg, err := sql.Open("pgx", PostgresURL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = pg.Close() })
	if err := pg.PingContext(ctx); err != nil {
		Unavailable(t, "PostgreSQL", err)
	}
	cfg, err := mysqlConfig(MySQLURL())
	require.NoError(t, err)
	my, err := sql.Open("mysql", cfg.FormatDSN())
	require.NoError(t, err)
	t.Cleanup(func() { _ = my.Close() })
	if err := my.PingContext(ctx); err != nil {
		Unavailable(t, "MariaDB", err)
	}
	conn, err := amqp091.Dial(AMQPURL())
	if err != nil {
		Unavailable(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)

	for _, n := range []string{mine, other} {
		for _, q := range []string{
			`CREATE TABLE watermill_` + n + ` (id BIGSERIAL PRIMARY KEY)`,
			`CREATE FUNCTION ` + n + `_notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`,
			`CREATE SCHEMA ` + n + `_schema`,
			`CREATE TABLE ` + n + `_schema.inbox (id INT)`,
		} {
			_, err := pg.ExecContext(ctx, q)
			require.NoError(t, err, q)
		}
		_, err := my.ExecContext(ctx, "CREATE TABLE `watermill_offsets_"+n+"-1` (id INT)")
		require.NoError(t, err)
		require.NoError(t, ch.ExchangeDeclare(n, "fanout", true, false, false, false, nil))
		_, err = ch.QueueDeclare(n+"_g.delay-10s", true, false, false, false, nil)
		require.NoError(t, err)
	}
	t.Cleanup(func() { sweep(context.Background(), []string{other}, false) })

	rep := sweep(ctx, []string{mine}, false)
	require.Empty(t, rep.errs)
	// PostgreSQL: the schema, the table (with its sequence), the function;
	// MariaDB: the table; RabbitMQ: the queue and the exchange.
	assert.Len(t, rep.removed, 6, "%v", rep.removed)

	exists := func(db *sql.DB, q, arg string) bool {
		var n int
		require.NoError(t, db.QueryRowContext(ctx, q, arg).Scan(&n))
		return n > 0
	}
	for n, want := range map[string]bool{mine: false, other: true} {
		assert.Equal(t, want, exists(pg, `SELECT count(*) FROM pg_tables WHERE tablename = $1`, "watermill_"+n), n)
		assert.Equal(t, want, exists(pg, `SELECT count(*) FROM pg_proc WHERE proname = $1`, n+"_notify"), n)
		assert.Equal(t, want, exists(pg, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, n+"_schema"), n)
		assert.Equal(t, want, exists(my, `SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?`,
			"watermill_offsets_"+n+"-1"), n)
		probe, err := conn.Channel()
		require.NoError(t, err)
		_, err = probe.QueueDeclarePassive(n+"_g.delay-10s", true, false, false, false, nil)
		assert.Equal(t, want, err == nil, "queue of %s: %v", n, err)
		if err == nil {
			err = probe.ExchangeDeclarePassive(n, "fanout", true, false, false, false, nil)
			assert.Equal(t, want, err == nil, "exchange of %s: %v", n, err)
			_ = probe.Close()
		}
	}
}

// TestAMQPVhost checks that a test's vhost is usable and gone after the test.
func TestAMQPVhost(t *testing.T) {
	t.Parallel()
	var url string
	t.Run("own vhost", func(t *testing.T) {
		url = AMQPVhost(t)
		conn, err := amqp091.Dial(url)
		require.NoError(t, err)
		defer conn.Close()
		ch, err := conn.Channel()
		require.NoError(t, err)
		require.NoError(t, ch.ExchangeDeclare("orders.order_created", "fanout", true, false, false, false, nil))
	})
	if url == "" {
		return // skipped
	}
	hosts, err := rabbitmqctl(context.Background(), AMQPNode(), "list_vhosts", "name")
	require.NoError(t, err)
	assert.NotContains(t, hosts, url[strings.LastIndex(url, "/")+1:])
}

func randomHex() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestOrphanJournal writes the journal of a process that died before its
// sweep and finds its objects swept, and the journal gone, by the next
// sweepOrphans; a live process's journal is left alone.
func TestOrphanJournal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pg, err := sql.Open("pgx", PostgresURL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = pg.Close() })
	if err := pg.PingContext(ctx); err != nil {
		Unavailable(t, "PostgreSQL", err)
	}
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	live := exec.Command("sleep", "30")
	require.NoError(t, live.Start())
	t.Cleanup(func() { _ = live.Process.Kill(); _ = live.Wait() })

	journals := map[*exec.Cmd]string{}
	tables := map[*exec.Cmd]string{}
	for _, p := range []*exec.Cmd{dead, live} {
		name := "orphan_" + randomHex()
		tables[p] = "watermill_" + name
		_, err := pg.ExecContext(ctx, `CREATE TABLE `+tables[p]+` (id INT)`)
		require.NoError(t, err)
		journals[p] = filepath.Join(journalDir(), strconv.Itoa(p.Process.Pid)+".names")
		require.NoError(t, os.MkdirAll(journalDir(), 0o700))
		require.NoError(t, os.WriteFile(journals[p], []byte(name+"\n"), 0o600))
	}
	t.Cleanup(func() {
		_, _ = pg.Exec(`DROP TABLE IF EXISTS ` + tables[live])
		_ = os.Remove(journals[live])
	})

	sweepOrphans(ctx)
	exists := func(table string) bool {
		var n int
		require.NoError(t, pg.QueryRowContext(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = $1`, table).Scan(&n))
		return n > 0
	}
	assert.False(t, exists(tables[dead]), "the dead process's table")
	assert.NoFileExists(t, journals[dead])
	assert.True(t, exists(tables[live]), "the live process's table")
	assert.FileExists(t, journals[live])
}
