package main

import (
	"bytes"
	"context"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/b2131a45/eventkit/internal/dburl"
	"github.com/b2131a45/eventkit/internal/kafkatest"
	"github.com/b2131a45/eventkit/internal/sample"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports"
)

func TestMain(m *testing.M) {
	testenv.Main(m,
		// Sarama's process-wide metrics ticker (rcrowley/go-metrics) never stops.
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
	)
}

// check runs the quickstart and checks the story it prints.
func check(t *testing.T, transportURL, dbURL string) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), &out, transportURL, dbURL, 90*time.Second)
	require.NoError(t, err, out.String())
	s := out.String()
	for _, want := range []string{
		"inventory ← orders.order_created",
		"payments  ← inventory.stock_reserved",
		"orders    ← payments.payment_processed",
		"relay     ⟳ published event=",
		"reason=permanent",
		"1 duplicate removed, 1 dead letter; SKU-1 stock 10 → 8",
		// names of its own, apart from the sample services'
		"dead letters in quickstart.orders.order_created.dlq:",
		"handler=quickstart.inventory.reserve-stock",
	} {
		assert.Contains(t, s, want)
	}
	assert.Contains(t, s, "causation=-", "the first event starts the conversation")
	assert.NotContains(t, s, "guest:guest", "passwords are redacted")
}

func TestQuickstartOnEmbeddedDefaults(t *testing.T) {
	t.Parallel()
	check(t, "mem://", "")
}

func TestQuickstartOnRabbitMQAndPostgres(t *testing.T) {
	t.Parallel()
	// The quickstart's topics are the event names: a vhost of the test's
	// own keeps its queues and exchanges apart from other runs', and
	// removes them when the test ends.
	amqpURL := testenv.AMQPVhost(t)
	tr, err := transports.Open(context.Background(), amqpURL)
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ", err)
	}
	require.NoError(t, tr.Close())
	db, err := dburl.Open(testenv.PostgresURL())
	require.NoError(t, err)
	defer db.Close()
	if err := db.Ping(); err != nil {
		testenv.Unavailable(t, "PostgreSQL", err)
	}
	schema := testenv.Name(t, "qs")
	_, err = db.Exec(`CREATE SCHEMA ` + schema)
	require.NoError(t, err)
	defer db.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
	check(t, amqpURL, withParam(testenv.PostgresURL(), "search_path="+schema))
}

func TestQuickstartOnKafkaAndMariaDB(t *testing.T) {
	t.Parallel()
	db, err := dburl.Open(testenv.MySQLURL())
	require.NoError(t, err)
	defer db.Close()
	if err := db.Ping(); err != nil {
		testenv.Unavailable(t, "MariaDB", err)
	}
	name := testenv.Name(t, "qs")
	_, err = db.Exec(`CREATE DATABASE ` + name)
	require.NoError(t, err)
	defer db.Exec(`DROP DATABASE ` + name)
	u, err := neturl.Parse(testenv.MySQLURL()) // EVENTKIT_MYSQL_URL may name any database
	require.NoError(t, err)
	u.Path = "/" + name
	url := u.String()
	cluster := kafkatest.Cluster(t)
	check(t, "kafka://"+strings.Join(cluster.ListenAddrs(), ","), url)
}

// TestQuickstartBesideTheSampleServices runs the quickstart on the broker
// and the database of a running sample inventory service, as a user does
// who tries the quickstart while docker compose runs: with topics, consumer
// groups and tables of its own, neither takes the other's events or rows.
// (With the sample services' names the inventory service consumed the
// quickstart's OrderCreated events from the same queue, and the story never
// completed.)
func TestQuickstartBesideTheSampleServices(t *testing.T) {
	t.Parallel()
	for name, broker := range map[string]func(t *testing.T, dbURL string) string{
		// The sample services' names are fixed: a vhost of the test's own
		// keeps them from other runs on the broker, and goes with the test.
		"RabbitMQ":   func(t *testing.T, _ string) string { return testenv.AMQPVhost(t) },
		"PostgreSQL": func(t *testing.T, dbURL string) string { return testenv.WithDelayTable(t, dbURL) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dbURL := testenv.PostgresSchema(t, "qs") // one database for both, as in docker-compose.yml
			transportURL := broker(t, dbURL)

			ctx, cancel := context.WithCancel(context.Background())
			ready, done := make(chan struct{}), make(chan error, 1)
			go func() {
				done <- sample.RunInventory(ctx, sample.ServiceConfig{
					TransportURL: transportURL, DatabaseURL: dbURL, HTTPAddr: "127.0.0.1:0",
					Logger: quiet(), Ready: func(string) { close(ready) },
				})
			}()
			t.Cleanup(func() {
				cancel()
				assert.NoError(t, <-done, "the sample inventory service")
			})
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("the sample inventory service did not start: %v", err)
			case <-time.After(60 * time.Second):
				t.Fatal("the sample inventory service did not start")
			}
			check(t, transportURL, dbURL)
		})
	}
}

func withParam(url, param string) string {
	if strings.Contains(url, "?") {
		return url + "&" + param
	}
	return url + "?" + param
}
