// Package e2e runs the three sample services in-process against real
// services and checks an order placed over HTTP ends as a processed payment
// with one correlation id.
package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/b2131a45/eventkit/health"
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

func TestOrderBecomesPaymentOverRabbitMQ(t *testing.T) {
	t.Parallel()
	// The services' topics and queues have fixed names: a vhost of the
	// test's own keeps them apart from other runs' (and from the services
	// of docker-compose), and removes them when the test ends.
	amqpURL := testenv.AMQPVhost(t)
	tr, err := transports.Open(context.Background(), amqpURL)
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ", err)
	}
	require.NoError(t, tr.Close())
	flow(t, amqpURL, testenv.PostgresSchema(t, "e2e"))
}

func TestOrderBecomesPaymentOverKafka(t *testing.T) {
	t.Parallel()
	cluster := kafkatest.Cluster(t)
	flow(t, "kafka://"+strings.Join(cluster.ListenAddrs(), ","), testenv.PostgresSchema(t, "e2e"))
}

// flow starts orders, inventory and payments with the same TRANSPORT_URL
// and DATABASE_URL, places an order over HTTP and waits for it to be paid.
func flow(t *testing.T, transportURL, databaseURL string) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	logger := slog.New(slog.DiscardHandler)
	addrs := map[string]chan string{}
	for name, run := range map[string]func(context.Context, sample.ServiceConfig) error{
		"orders": sample.RunOrders, "inventory": sample.RunInventory, "payments": sample.RunPayments,
	} {
		ready := make(chan string, 1)
		addrs[name] = ready
		cfg := sample.ServiceConfig{TransportURL: transportURL, DatabaseURL: databaseURL, HTTPAddr: "127.0.0.1:0",
			Stock: "SKU-1=10", Logger: logger, Ready: func(addr string) { ready <- addr }}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx, cfg); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	base := map[string]string{}
	for name, ready := range addrs {
		select {
		case addr := <-ready:
			base[name] = "http://" + addr
		case <-time.After(60 * time.Second):
			t.Fatalf("%s did not start", name)
		}
	}
	for name, url := range base {
		var rep health.Report
		require.Eventually(t, func() bool { return get(t, url+"/healthz", &rep) == http.StatusOK },
			30*time.Second, 20*time.Millisecond, "%s /healthz: %+v", name, rep)
		assert.Equal(t, health.Report{Status: "ok", Checks: map[string]string{"relay": "ok", "processor": "ok"}}, rep, name)
	}

	body := `{"customer_email":"ada@example.com","total_cents":4990,"items":[{"sku":"SKU-1","quantity":3}]}`
	req, err := http.NewRequest(http.MethodPost, base["orders"]+"/orders", bytes.NewBufferString(body))
	require.NoError(t, err)
	req.Header.Set("X-Correlation-ID", "e2e-"+t.Name())
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var placed map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&placed))
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, placed)
	orderID := placed["order_id"]

	require.Eventually(t, func() bool {
		var o map[string]string
		return get(t, base["orders"]+"/orders/"+orderID, &o) == http.StatusOK && o["status"] == "paid"
	}, 60*time.Second, 50*time.Millisecond, "order never paid")

	var stock map[string]any
	require.Equal(t, http.StatusOK, get(t, base["inventory"]+"/stock/SKU-1", &stock))
	assert.EqualValues(t, 7, stock["available"])

	// One correlation id across the three hops, read from the outboxes.
	db, err := dburl.Open(databaseURL)
	require.NoError(t, err)
	defer db.Close()
	assert.Equal(t, []string{"e2e-" + t.Name()}, correlationIDs(t, db, orderID))

	// Each service's /metrics shows the traffic: its relay published its
	// event, its handler ran, its outbox is drained.
	for name, want := range map[string][]string{
		"orders": {
			`eventkit_relay_published_total{outbox="orders_outbox",service="orders",topic="orders.order_created"} 1`,
			`eventkit_handler_duration_seconds_count{handler="orders.mark-paid",service="orders",topic="payments.payment_processed"} 1`,
		},
		"inventory": {
			`eventkit_relay_published_total{outbox="inventory_outbox",service="inventory",topic="inventory.stock_reserved"} 1`,
			`eventkit_handler_duration_seconds_count{handler="inventory.reserve-stock",service="inventory",topic="orders.order_created"} 1`,
		},
		"payments": {
			`eventkit_handler_duration_seconds_count{handler="payments.charge",service="payments",topic="inventory.stock_reserved"} 1`,
			`eventkit_outbox_pending{outbox="payments_outbox",service="payments"} 0`,
			`eventkit_outbox_up{outbox="payments_outbox",service="payments"} 1`,
			"\ngo_goroutines ",
		},
	} {
		require.Eventually(t, func() bool {
			text := scrape(t, base[name]+"/metrics")
			for _, w := range want {
				if !strings.Contains(text, w) {
					return false
				}
			}
			return true
		}, 30*time.Second, 50*time.Millisecond, "%s /metrics lacks one of %q:\n%s", name, want, scrape(t, base[name]+"/metrics"))
	}

	// A bad request is refused without side effects.
	resp, err = http.Post(base["orders"]+"/orders", "application/json", bytes.NewBufferString(`{"items":[]}`))
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

func get(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(v)
	return resp.StatusCode
}

// scrape returns the text of a /metrics page.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// correlationIDs returns the distinct correlation ids of the events about
// orderID in the three outboxes (the rows keep Watermill's forwarder
// envelope: metadata inside the JSON payload).
func correlationIDs(t *testing.T, db *sql.DB, orderID string) []string {
	t.Helper()
	seen := map[string]bool{}
	for _, table := range []string{"watermill_orders_outbox", "watermill_inventory_outbox", "watermill_payments_outbox"} {
		rows, err := db.Query(fmt.Sprintf(`SELECT payload FROM %s`, table))
		require.NoError(t, err)
		for rows.Next() {
			var raw []byte
			require.NoError(t, rows.Scan(&raw))
			var env struct {
				Payload  []byte            `json:"payload"`
				Metadata map[string]string `json:"metadata"`
			}
			require.NoError(t, json.Unmarshal(raw, &env))
			if strings.Contains(string(env.Payload), orderID) {
				seen[env.Metadata["correlation_id"]] = true
			}
		}
		require.NoError(t, rows.Err())
		rows.Close()
	}
	var ids []string
	for id := range seen {
		ids = append(ids, id)
	}
	require.Len(t, ids, 1, "events of the order in %d conversations: %v", len(ids), ids)
	return ids
}
