package metrics_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/b2131a45/eventkit/metrics"
)

func Example() {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	// Pass m as forwarder.RelayConfig.Observer and middleware.DefaultConfig.Observer,
	// and m.WatchOutbox(outbox); the relay then reports each publish:
	m.Published("orders_outbox", "orders.order_created", 100, 100, 3*time.Millisecond, nil)

	err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP eventkit_relay_published_total Events the broker confirmed to the relay.
# TYPE eventkit_relay_published_total counter
eventkit_relay_published_total{outbox="orders_outbox",topic="orders.order_created"} 100
`), "eventkit_relay_published_total")
	fmt.Println(err)
	// Output: <nil>
}
