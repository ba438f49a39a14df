package docs

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/health"
	"github.com/b2131a45/eventkit/metrics"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

// observabilityTracing is docs/observability.md's tracing snippet, with
// what it leaves to the program around it: db, reg, tp, t, inbox.
func observabilityTracing(db *sql.DB, reg *events.Registry, tp trace.TracerProvider, t *transports.Transport, inbox middleware.InboxStore) (*forwarder.Outbox, *middleware.Chain) {
	// docs:begin tracing
	ob, _ := forwarder.NewOutbox(db, forwarder.OutboxConfig{
		Registry: reg, TracerProvider: tp, MessagingSystem: t.MessagingSystem(),
	}) // relays of ob inherit both
	chain, _ := middleware.Default(middleware.DefaultConfig{
		Publisher: t.Publisher(), Inbox: inbox, TracerProvider: tp, MessagingSystem: t.MessagingSystem(),
	})
	// docs:end tracing
	return ob, chain
}

// The tracing snippet, run: an event added to the outbox under the
// caller's span gets a create span (its child), the relay (configured with
// no tracer of its own) a send span in a new trace linking to it, and the
// handler a process span, child of create: the spans of the page's table.
func TestObservabilityTracing(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { require.NoError(t, tp.Shutdown(context.Background())) }()
	db, _ := sqliteDB(t)
	reg := events.NewRegistry()
	events.MustRegister[OrderCreated](reg, "orders.order_created", events.Version(2), events.Upcast(1, orderCreatedV1toV2))
	tr := memTransport(t)
	inbox, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
	require.NoError(t, err)

	ob, chain := observabilityTracing(db, reg, tp, tr, inbox)
	require.NotNil(t, ob)
	require.NotNil(t, chain)

	require.NoError(t, ob.Setup(ctx))
	handled := make(chan string, 1)
	router, proc := consumer(t, tr, reg, chain, func(ctx context.Context, e *OrderCreated) error {
		handled <- e.OrderID
		return nil
	})
	require.NotNil(t, proc)
	relay, err := forwarder.NewRelay(ob, tr.Publisher(), forwarder.RelayConfig{})
	require.NoError(t, err)
	run(t, ctx, router, relay)

	ctx, checkout := tp.Tracer("shop").Start(ctx, "checkout")
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, ob.Add(ctx, tx, OrderCreated{OrderID: "o-1"}))
	require.NoError(t, tx.Commit())
	checkout.End()
	select {
	case id := <-handled:
		require.Equal(t, "o-1", id)
	case <-ctx.Done():
		t.Fatal("the event was not handled")
	}

	span := func(name string) sdktrace.ReadOnlySpan {
		var found sdktrace.ReadOnlySpan
		require.Eventually(t, func() bool {
			for _, s := range rec.Ended() {
				if s.Name() == name {
					found = s
					return true
				}
			}
			return false
		}, 10*time.Second, 10*time.Millisecond, "no span %q", name)
		return found
	}
	create, send, process := span("create orders.order_created"), span("send orders.order_created"), span("process orders.order_created")
	assert.Equal(t, trace.SpanKindProducer, create.SpanKind())
	assert.Equal(t, checkout.SpanContext().SpanID(), create.Parent().SpanID(), "create is a child of the caller's span")
	assert.Equal(t, trace.SpanKindProducer, send.SpanKind())
	assert.NotEqual(t, create.SpanContext().TraceID(), send.SpanContext().TraceID(), "send starts a new trace")
	require.Len(t, send.Links(), 1)
	assert.Equal(t, create.SpanContext().SpanID(), send.Links()[0].SpanContext.SpanID(), "send links to create")
	assert.Equal(t, trace.SpanKindConsumer, process.SpanKind())
	assert.Equal(t, create.SpanContext().TraceID(), process.SpanContext().TraceID(), "the consumer continues the producer's trace")
	assert.Equal(t, create.SpanContext().SpanID(), process.Parent().SpanID(), "process is a child of create")
	for _, s := range []sdktrace.ReadOnlySpan{create, send, process} {
		assert.Contains(t, attrs(s), "messaging.system="+tr.MessagingSystem(), s.Name())
		assert.Contains(t, attrs(s), "messaging.destination.name=orders.order_created", s.Name())
	}
}

// attrs are a span's attributes as key=value.
func attrs(s sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, kv := range s.Attributes() {
		out = append(out, string(kv.Key)+"="+kv.Value.Emit())
	}
	return out
}

// observabilityMetricsAndHealth is docs/observability.md's metrics and
// health snippets, in the order a service wires them, with what they leave
// to the program around them: ob, t, inbox, mux, and the router and
// processor that consume.
func observabilityMetricsAndHealth(ob *forwarder.Outbox, t *transports.Transport, inbox middleware.InboxStore, mux *http.ServeMux,
	consume func(*middleware.Chain) *cqrs.Processor,
) *forwarder.Relay {
	// docs:begin metrics
	m, _ := metrics.New(prometheus.DefaultRegisterer, metrics.Config{})
	m.WatchOutbox(ob)
	relay, _ := forwarder.NewRelay(ob, t.Publisher(), forwarder.RelayConfig{Observer: m})
	chain, _ := middleware.Default(middleware.DefaultConfig{Publisher: t.Publisher(), Inbox: inbox, Observer: m})
	mux.Handle("GET /metrics", promhttp.Handler())
	// docs:end metrics
	proc := consume(chain)
	// docs:begin health
	mux.Handle("GET /healthz", health.Handler(health.Checks{
		"relay":     relay.Health,
		"processor": proc.Health,
	}, health.Config{}))
	// docs:end health
	return relay
}

// The metrics and health snippets, run: after one event went from the
// outbox to its handler, /metrics shows it relayed, published and handled,
// and /healthz answers 200 with every check ok, then 503 once the relay
// stops. Not parallel: the snippet registers on Prometheus's default
// registry, which the test replaces by a fresh one for its duration.
func TestObservabilityMetricsAndHealth(t *testing.T) {
	fresh := prometheus.NewRegistry()
	registerer, gatherer := prometheus.DefaultRegisterer, prometheus.DefaultGatherer
	prometheus.DefaultRegisterer, prometheus.DefaultGatherer = fresh, fresh
	t.Cleanup(func() { prometheus.DefaultRegisterer, prometheus.DefaultGatherer = registerer, gatherer })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a loaded CI machine
	defer cancel()
	db, _ := sqliteDB(t)
	reg := events.NewRegistry()
	events.MustRegister[OrderCreated](reg, "orders.order_created", events.Version(2), events.Upcast(1, orderCreatedV1toV2))
	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Source: "orders"})
	require.NoError(t, err)
	require.NoError(t, ob.Setup(ctx))
	tr := memTransport(t)
	inbox, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
	require.NoError(t, err)
	mux := http.NewServeMux()

	handled := make(chan string, 1)
	var router *message.Router
	relay := observabilityMetricsAndHealth(ob, tr, inbox, mux, func(chain *middleware.Chain) *cqrs.Processor {
		var proc *cqrs.Processor
		router, proc = consumer(t, tr, reg, chain, func(ctx context.Context, e *OrderCreated) error {
			handled <- e.OrderID
			return nil
		})
		return proc
	})
	relayCtx, stopRelay := context.WithCancel(ctx)
	defer stopRelay()
	run(t, relayCtx, router, relay)

	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, ob.Add(ctx, tx, OrderCreated{OrderID: "o-1"}))
	require.NoError(t, tx.Commit())
	select {
	case id := <-handled:
		require.Equal(t, "o-1", id)
	case <-ctx.Done():
		t.Fatal("the event was not handled")
	}

	require.Eventually(t, func() bool {
		code, body := get(t, mux, "/metrics")
		return code == http.StatusOK &&
			strings.Contains(body, "\neventkit_relay_published_total{outbox=\"outbox\",topic=\"orders.order_created\"} 1\n") &&
			strings.Contains(body, "\neventkit_outbox_published{outbox=\"outbox\"} 1\n") &&
			strings.Contains(body, "\neventkit_outbox_pending{outbox=\"outbox\"} 0\n") &&
			strings.Contains(body, "\neventkit_outbox_up{outbox=\"outbox\"} 1\n") &&
			strings.Contains(body, "\neventkit_handler_duration_seconds_count{handler=\"inventory.reserve-stock\",topic=\"orders.order_created\"} 1\n")
	}, 10*time.Second, 20*time.Millisecond, "/metrics: %s", func() string { _, b := get(t, mux, "/metrics"); return b }())

	var rep health.Report
	code, body := get(t, mux, "/healthz")
	require.Equal(t, http.StatusOK, code, body)
	require.NoError(t, json.Unmarshal([]byte(body), &rep))
	require.Equal(t, health.Report{Status: "ok", Checks: map[string]string{"relay": "ok", "processor": "ok"}}, rep)

	stopRelay()
	waitStopped(t, relay)
	code, body = get(t, mux, "/healthz")
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	rep = health.Report{}
	require.NoError(t, json.Unmarshal([]byte(body), &rep))
	require.Equal(t, "unavailable", rep.Status)
	require.Contains(t, rep.Checks["relay"], "not running")
	require.Equal(t, "ok", rep.Checks["processor"])
}

// get is the status and body of a GET of path on h.
func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// consumer is a router with chain and a processor with handle as the
// handler inventory.reserve-stock of OrderCreated.
func consumer(t *testing.T, tr *transports.Transport, reg *events.Registry, chain *middleware.Chain,
	handle func(context.Context, *OrderCreated) error,
) (*message.Router, *cqrs.Processor) {
	t.Helper()
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	router.AddMiddleware(chain.Middlewares()...)
	proc, err := cqrs.NewProcessor(router, tr.Subscriber, cqrs.ProcessorConfig{Registry: reg, DeadLetter: tr.Publisher()})
	require.NoError(t, err)
	require.NoError(t, proc.AddHandlers(cqrs.NewHandler("inventory.reserve-stock", handle)))
	return router, proc
}

// run runs the router until the test ends, and the relay until ctx ends
// (or the test): both have stopped when the test's cleanups are done.
func run(t *testing.T, ctx context.Context, router *message.Router, relay *forwarder.Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	routed, relayed := make(chan error, 1), make(chan error, 1)
	go func() { routed <- router.Run(context.Background()) }()
	go func() { relayed <- relay.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-relayed)
		require.NoError(t, router.Close())
		require.NoError(t, <-routed)
	})
	select {
	case <-router.Running():
	case err := <-routed:
		t.Fatalf("the router stopped: %v", err)
	}
}
