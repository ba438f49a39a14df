package monitoring

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/dburl"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/metrics"
)

func TestMain(m *testing.M) {
	testenv.Main(m, goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"))
}

type Placed struct {
	OrderID string `json:"order_id"`
}

type accepting struct{}

func (accepting) Publish(string, ...*message.Message) error { return nil }
func (accepting) Close() error                              { return nil }

// alerts returns the alerts Prometheus has, by name, with their state.
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

// A real Prometheus (Debian's package) scrapes the metrics of a process
// with a real PostgreSQL outbox and evaluates the shipped rules, their
// thresholds scaled down to seconds: while the relay runs nothing fires;
// when it stops and an event waits, the lag alert and the no-relay alert
// fire, for that outbox.
func TestPrometheusFiresLagAlertWhenRelayStops(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		testenv.Unavailable(t, "prometheus (apt-get install -y prometheus)", err)
	}
	ctx := context.Background()
	db, err := dburl.Open(testenv.PostgresURL())
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(ctx); err != nil {
		testenv.Unavailable(t, "PostgreSQL", err)
	}
	reg := events.NewRegistry()
	require.NoError(t, events.Register[Placed](reg, "monitoring.order_placed"))
	name := testenv.Name(t, "mon")
	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Name: name})
	require.NoError(t, err)
	require.NoError(t, ob.Setup(ctx))
	t.Cleanup(func() { assert.NoError(t, ob.Drop(context.Background())) })

	promReg := prometheus.NewRegistry()
	m, err := metrics.New(promReg, metrics.Config{})
	require.NoError(t, err)
	m.WatchOutbox(ob)
	srv := httptest.NewServer(promhttp.HandlerFor(promReg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)

	relay, err := forwarder.NewRelay(ob, accepting{}, forwarder.RelayConfig{Observer: m, PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	rctx, stopRelay := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = relay.Run(rctx) }()
	t.Cleanup(func() { stopRelay(); wg.Wait() })
	require.Eventually(t, func() bool { return relay.State().Active }, 20*time.Second, 10*time.Millisecond)

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
	write(t, filepath.Join(dir, "prometheus.yml"), fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%s]
scrape_configs:
  - job_name: eventkit
    static_configs:
      - targets: ['%s']
`, rulesFile, strings.TrimPrefix(srv.URL, "http://")))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	pctx, stopProm := context.WithCancel(ctx)
	cmd := exec.CommandContext(pctx, bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		stopProm()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	lag, noRelay := "EventkitOutboxLagHigh "+name, "EventkitOutboxNoActiveRelay "+name

	// The relay runs, nothing waits: scraped, evaluated, quiet.
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/api/v1/query?query=" + "eventkit_outbox_relay_active%7Boutbox%3D%22" + name + "%22%7D")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), `"1"]`)
	}, time.Minute, 200*time.Millisecond, "Prometheus scrapes relay_active 1")
	time.Sleep(3 * time.Second) // several evaluations
	a := alerts(t, base)
	assert.Empty(t, a[lag])
	assert.Empty(t, a[noRelay])

	// The relay stops; an event waits.
	stopRelay()
	wg.Wait()
	tx, err := db.Begin()
	require.NoError(t, err)
	require.NoError(t, ob.Add(ctx, tx, Placed{OrderID: "o-1"}))
	require.NoError(t, tx.Commit())
	require.Eventually(t, func() bool {
		a := alerts(t, base)
		return a[lag] == "firing" && a[noRelay] == "firing"
	}, time.Minute, 200*time.Millisecond, "the lag and no-relay alerts fire: %v", alerts(t, base))
}
