package monitoring

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/b2131a45/eventkit/internal/sample"
	"github.com/b2131a45/eventkit/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.Main(m, goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"))
}

// alerts returns the alerts Prometheus has (pending or firing: an
// inactive alert is not listed), by "alertname outbox", with their state.
func alerts(t *testing.T, base string) map[string]string {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/alerts")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if json.NewDecoder(resp.Body).Decode(&body) != nil {
		return nil
	}
	out := map[string]string{}
	for _, a := range body.Data.Alerts {
		out[a.Labels["alertname"]+" "+a.Labels["outbox"]] = a.State
	}
	return out
}

// query returns the values of a PromQL instant query, by instance.
func query(t *testing.T, base, q string) map[string]string {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if json.NewDecoder(resp.Body).Decode(&body) != nil {
		return nil
	}
	out := map[string]string{}
	for _, r := range body.Data.Result {
		if len(r.Value) == 2 {
			out[r.Metric["instance"]], _ = r.Value[1].(string)
		}
	}
	return out
}

// service is a sample service running in the test's process.
type service struct {
	base string
	stop func() // cancels its context and waits for it to return
}

// start runs a sample service until stop or the test's end, and waits
// until it serves and consumes.
func start(t *testing.T, name string, run func(context.Context, sample.ServiceConfig) error, cfg sample.ServiceConfig) *service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	cfg.Ready = func(addr string) { ready <- addr }
	go func() { done <- run(ctx, cfg) }()
	stopped := false
	s := &service{stop: func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		assert.NoError(t, <-done, name)
	}}
	t.Cleanup(s.stop)
	select {
	case addr := <-ready:
		s.base = "http://" + addr
	case err := <-done:
		stopped = true
		cancel()
		t.Fatalf("%s did not start: %v", name, err)
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not start", name)
	}
	return s
}

// freeAddr returns a loopback address nothing listens on now: the relay
// replica listens there both times it runs, so that Prometheus scrapes it
// again after its restart.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// order places an order over HTTP and returns its id.
func order(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Post(base+"/orders", "application/json",
		bytes.NewBufferString(`{"customer_email":"ada@example.com","total_cents":990,"items":[{"sku":"SKU-1","quantity":1}]}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	var placed map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&placed))
	require.Equal(t, http.StatusCreated, resp.StatusCode, placed)
	return placed["order_id"]
}

// status returns an order's status ("" when it cannot be read).
func status(base, id string) string {
	resp, err := http.Get(base + "/orders/" + id)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var o map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&o)
	return o["status"]
}

// A real Prometheus (Debian's package) scrapes the four /metrics of the
// sample services (orders twice: an API replica with RELAY=off, and a
// replica that runs the relay; inventory; payments), in this process, on
// a PostgreSQL schema and a RabbitMQ vhost of the test's own, and evaluates
// the shipped rules, their thresholds scaled down to seconds. An order
// placed on the API replica is paid and nothing fires. When the relay
// replica stops, the next order waits in the outbox: the lag alert and the
// no-relay alert fire for orders_outbox (and only for it). When the relay
// replica is back, the order is paid and both alerts end.
func TestPrometheusAlertsWhenTheOrdersRelayStops(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		testenv.Unavailable(t, "prometheus (apt-get install -y prometheus)", err)
	}
	amqpURL := testenv.AMQPVhost(t)
	dbURL := testenv.PostgresSchema(t, "mon")
	logs := &testenv.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("services:\n%s", logs.String())
		}
	})
	cfg := func(addr string, relay sample.RelayMode) sample.ServiceConfig {
		return sample.ServiceConfig{TransportURL: amqpURL, DatabaseURL: dbURL, HTTPAddr: addr, Relay: relay, Stock: "SKU-1=10",
			Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	}
	relayAddr := freeAddr(t)
	relay := start(t, "orders (relay)", sample.RunOrders, cfg(relayAddr, sample.RelayOn))
	api := start(t, "orders (RELAY=off)", sample.RunOrders, cfg("127.0.0.1:0", sample.RelayOff))
	inventory := start(t, "inventory", sample.RunInventory, cfg("127.0.0.1:0", ""))
	payments := start(t, "payments", sample.RunPayments, cfg("127.0.0.1:0", ""))

	// The shipped rules, with 60 s of lag → 2 s and 2 minutes → 2 s.
	dir := t.TempDir()
	rules := readFile(t, rulesFile)
	for from, to := range map[string]string{
		"(eventkit_outbox_oldest_pending_age_seconds) > 60\n        for: 2m": "(eventkit_outbox_oldest_pending_age_seconds) > 2\n        for: 2s",
		"(eventkit_outbox_relay_active) == 0\n        for: 2m":               "(eventkit_outbox_relay_active) == 0\n        for: 2s",
	} {
		require.Equal(t, 1, strings.Count(rules, from), from)
		rules = strings.Replace(rules, from, to, 1)
	}
	write(t, filepath.Join(dir, rulesFile), rules)
	var targets []string
	for _, s := range []*service{relay, api, inventory, payments} {
		targets = append(targets, "'"+strings.TrimPrefix(s.base, "http://")+"'")
	}
	write(t, filepath.Join(dir, "prometheus.yml"), fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%s]
scrape_configs:
  - job_name: sample
    static_configs:
      - targets: [%s]
`, rulesFile, strings.Join(targets, ", ")))
	addr := freeAddr(t)
	pctx, stopProm := context.WithCancel(context.Background())
	cmd := exec.CommandContext(pctx, bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	var promLogs testenv.Buffer
	cmd.Stdout, cmd.Stderr = &promLogs, &promLogs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		stopProm()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus:\n%s", promLogs.String())
		}
	})
	prom := "http://" + addr
	lag, noRelay := "EventkitOutboxLagHigh orders_outbox", "EventkitOutboxNoActiveRelay orders_outbox"

	// Every service is scraped; both orders replicas see the relay's lock.
	require.Eventually(t, func() bool {
		up := query(t, prom, `up{job="sample"} == 1`)
		active := query(t, prom, `eventkit_outbox_relay_active{outbox="orders_outbox"} == 1`)
		return len(up) == 4 && len(active) == 2
	}, time.Minute, 200*time.Millisecond, "Prometheus scrapes the four services, relay_active 1 on both orders replicas")

	// An order placed on the API replica is relayed by the other and paid.
	first := order(t, api.base)
	require.Eventually(t, func() bool { return status(api.base, first) == "paid" }, time.Minute, 50*time.Millisecond, "order %s never paid", first)
	require.Eventually(t, func() bool {
		return query(t, prom, `eventkit_relay_published_total{outbox="orders_outbox"} >= 1`)[relayAddr] != ""
	}, 30*time.Second, 200*time.Millisecond, "Prometheus scraped the relay's publish")
	time.Sleep(3 * time.Second) // several evaluations, longer than the rules' for
	a := alerts(t, prom)
	for _, outbox := range []string{"orders_outbox", "inventory_outbox", "payments_outbox"} {
		assert.Empty(t, a["EventkitOutboxLagHigh "+outbox], outbox)
		assert.Empty(t, a["EventkitOutboxNoActiveRelay "+outbox], outbox)
	}

	// The relay replica stops; the next order waits in the outbox.
	relay.stop()
	second := order(t, api.base)
	require.Eventually(t, func() bool {
		a := alerts(t, prom)
		return a[lag] == "firing" && a[noRelay] == "firing"
	}, time.Minute, 200*time.Millisecond, "the lag and no-relay alerts fire for orders_outbox: %v", alerts(t, prom))
	a = alerts(t, prom)
	for _, outbox := range []string{"inventory_outbox", "payments_outbox"} {
		assert.Empty(t, a["EventkitOutboxLagHigh "+outbox], "%s: its relay runs", outbox)
		assert.Empty(t, a["EventkitOutboxNoActiveRelay "+outbox], "%s: its relay runs", outbox)
	}
	assert.Equal(t, "created", status(api.base, second), "nobody relayed it")

	// The relay replica is back: the order is paid and the alerts end.
	start(t, "orders (relay, again)", sample.RunOrders, cfg(relayAddr, sample.RelayOn))
	require.Eventually(t, func() bool { return status(api.base, second) == "paid" }, time.Minute, 50*time.Millisecond, "order %s never paid", second)
	require.Eventually(t, func() bool {
		a := alerts(t, prom)
		return a != nil && a[lag] == "" && a[noRelay] == ""
	}, time.Minute, 200*time.Millisecond, "the alerts end: %v", alerts(t, prom))
}
