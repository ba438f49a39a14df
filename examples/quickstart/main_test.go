package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/b2131a45/eventkit/internal/dburl"
	"github.com/b2131a45/eventkit/internal/kafkatest"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
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
	tr, err := transports.Open(context.Background(), testenv.AMQPURL())
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
	check(t, testenv.AMQPURL(), withParam(testenv.PostgresURL(), "search_path="+schema))
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
	url := strings.Replace(testenv.MySQLURL(), "/test", "/"+name, 1)
	cluster := kafkatest.Cluster(t)
	check(t, "kafka://"+strings.Join(cluster.ListenAddrs(), ","), url)
}

func withParam(url, param string) string {
	if strings.Contains(url, "?") {
		return url + "&" + param
	}
	return url + "?" + param
}
