package metrics_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/metrics"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

type Placed struct {
	ID string `json:"id"`
}

type Poison struct {
	ID string `json:"id"`
}

// rejecting is a broker that refuses every message (not an outage), so the
// relay parks the rows.
type rejecting struct{}

type rejectedErr struct{}

func (rejectedErr) Error() string     { return "rejected" }
func (rejectedErr) Unavailable() bool { return false }
func (rejectedErr) Permanent() bool   { return true }

func (rejecting) Publish(string, ...*message.Message) error { return rejectedErr{} }
func (rejecting) Close() error                              { return nil }

type fixture struct {
	t   *testing.T
	db  *sql.DB
	reg *events.Registry
}

func (f fixture) outbox(name string, topic cqrs.TopicFunc) *forwarder.Outbox {
	ob, err := forwarder.NewOutbox(f.db, forwarder.OutboxConfig{Registry: f.reg, Name: name, Topic: topic})
	require.NoError(f.t, err)
	require.NoError(f.t, ob.Setup(context.Background()))
	f.t.Cleanup(func() { _ = ob.Drop(context.Background()) })
	return ob
}

func (f fixture) add(ob *forwarder.Outbox, evts ...any) {
	ctx := context.Background()
	tx, err := f.db.BeginTx(ctx, nil)
	require.NoError(f.t, err)
	require.NoError(f.t, ob.Add(ctx, tx, evts...))
	require.NoError(f.t, tx.Commit())
}

func run(t *testing.T, f func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func fastRelay(obs forwarder.RelayObserver) forwarder.RelayConfig {
	return forwarder.RelayConfig{
		MaxAttempts: 1, PollInterval: 100 * time.Millisecond, MinPollInterval: 5 * time.Millisecond,
		RetryInterval: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Observer: obs,
	}
}

// Real traffic (PostgreSQL outboxes, RabbitMQ) and then a scrape: every
// metric of the package doc has the value the traffic implies.
func TestMetrics_AfterRealTraffic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sql.Open("pgx", testenv.PostgresURL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	if err := db.PingContext(ctx); err != nil {
		testenv.Unavailable(t, "PostgreSQL", err)
	}
	tr, err := transports.Open(ctx, testenv.AMQPURL())
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { _ = tr.Close() })

	reg := events.NewRegistry()
	require.NoError(t, events.Register[Placed](reg, "m.placed"))
	require.NoError(t, events.Register[Poison](reg, "m.poison"))
	prefix := testenv.Name(t, "m")
	topic := func(name string) string { return prefix + "." + name }
	placedTopic, poisonTopic := topic("m.placed"), topic("m.poison")
	f := fixture{t: t, db: db, reg: reg}

	promReg := prometheus.NewRegistry()
	m, err := metrics.New(promReg, metrics.Config{})
	require.NoError(t, err)
	_, err = metrics.New(promReg, metrics.Config{})
	require.ErrorAs(t, err, &prometheus.AlreadyRegisteredError{}, "a second registration fails")

	relayed := f.outbox(prefix+"_a", topic) // relayed to RabbitMQ
	parked := f.outbox(prefix+"_b", topic)  // relayed to a broker that rejects
	stuck := f.outbox(prefix+"_c", topic)   // no relay: pending
	for _, ob := range []*forwarder.Outbox{relayed, parked, stuck, stuck} {
		m.WatchOutbox(ob)
	}

	// Consumers: ok succeeds, flaky fails each event's first attempt,
	// poison fails permanently (dead letter).
	inbox, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
	require.NoError(t, err)
	chain, err := middleware.Default(middleware.DefaultConfig{
		Publisher: tr.Publisher(), Inbox: inbox, Subscribers: tr.Subscriber, Observer: m,
		Retry:        middleware.RetryConfig{InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond},
		DelayedRetry: middleware.DelayedRetryConfig{Levels: []time.Duration{50 * time.Millisecond}},
		Logger:       slogDiscard(),
	})
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	router.AddMiddleware(chain.Middlewares()...)
	proc, err := cqrs.NewProcessor(router, tr.Subscriber, cqrs.ProcessorConfig{DeadLetter: tr.Publisher(), Registry: reg, Topic: topic})
	require.NoError(t, err)
	okName, flakyName, poisonName, delayName := prefix+"_ok", prefix+"_flaky", prefix+"_poison", prefix+"_delay"
	var mu sync.Mutex
	seen := map[string]bool{}
	delayCalls := 0
	ids := map[string]string{} // Placed.ID → event id
	require.NoError(t, proc.AddHandlers(
		cqrs.NewHandler(okName, func(ctx context.Context, e *Placed) error {
			env, _ := events.EnvelopeFromContext(ctx)
			mu.Lock()
			defer mu.Unlock()
			ids[e.ID] = env.ID
			return nil
		}),
		cqrs.NewHandler(flakyName, func(_ context.Context, e *Placed) error {
			mu.Lock()
			defer mu.Unlock()
			if !seen[e.ID] {
				seen[e.ID] = true
				return errors.New("first attempt fails")
			}
			return nil
		}),
		cqrs.NewHandler(poisonName, func(context.Context, *Poison) error {
			return middleware.Permanent(errors.New("cannot handle"))
		}),
		// Fails its 5 immediate attempts of event 1, once: one delayed round.
		cqrs.NewHandler(delayName, func(_ context.Context, e *Placed) error {
			mu.Lock()
			defer mu.Unlock()
			if e.ID == "1" && delayCalls < 5 {
				delayCalls++
				return errors.New("down for a while")
			}
			return nil
		}),
	))
	run(t, router.Run)
	<-router.Running()

	okRelay, err := forwarder.NewRelay(relayed, tr.Publisher(), fastRelay(m))
	require.NoError(t, err)
	run(t, okRelay.Run)
	badRelay, err := forwarder.NewRelay(parked, rejecting{}, fastRelay(m))
	require.NoError(t, err)
	run(t, badRelay.Run)

	f.add(relayed, Placed{ID: "1"}, Placed{ID: "2"}, Placed{ID: "3"}, Poison{ID: "p"})
	f.add(parked, Placed{ID: "x"})
	f.add(stuck, Placed{ID: "s1"}, Placed{ID: "s2"})
	f.add(stuck, Placed{ID: "later"}, forwarder.DeliverAfter(time.Hour))

	val := func(c string, labels ...string) float64 { return counterValue(t, promReg, c, labels...) }
	require.Eventually(t, func() bool {
		return histCount(t, promReg, "eventkit_handler_duration_seconds", "handler", okName) == 3 &&
			histCount(t, promReg, "eventkit_handler_duration_seconds", "handler", flakyName) == 6 &&
			val("eventkit_dead_letters_total", "handler", poisonName) == 1 &&
			histCount(t, promReg, "eventkit_handler_duration_seconds", "handler", delayName) == 8 &&
			val("eventkit_relay_parked_total", "outbox", parked.Name()) == 1
	}, 30*time.Second, 10*time.Millisecond)

	// A redelivery of an event both Placed handlers already handled.
	dup := message.NewMessage("dup-1", []byte(`{"id":"1"}`))
	dup.Metadata.Set(events.KeyName, "m.placed")
	mu.Lock()
	dup.Metadata.Set(events.KeyEventID, ids["1"])
	mu.Unlock()
	require.NoError(t, tr.Publisher().Publish(placedTopic, dup))
	require.Eventually(t, func() bool {
		return val("eventkit_inbox_duplicates_total", "handler", okName) == 1 &&
			val("eventkit_inbox_duplicates_total", "handler", flakyName) == 1
	}, 30*time.Second, 10*time.Millisecond)

	// Relay.
	assert.Equal(t, 3.0, val("eventkit_relay_published_total", "outbox", relayed.Name(), "topic", placedTopic))
	assert.Equal(t, 1.0, val("eventkit_relay_published_total", "outbox", relayed.Name(), "topic", poisonTopic))
	assert.Equal(t, 0.0, val("eventkit_relay_published_total", "outbox", parked.Name()))
	assert.GreaterOrEqual(t, val("eventkit_relay_publish_errors_total", "outbox", parked.Name()), 1.0)
	assert.GreaterOrEqual(t, histCount(t, promReg, "eventkit_relay_batch_size", "outbox", relayed.Name()), uint64(1))
	assert.Equal(t, 4.0, histSum(t, promReg, "eventkit_relay_batch_size", "outbox", relayed.Name()), "4 rows read in batches")
	assert.GreaterOrEqual(t, histCount(t, promReg, "eventkit_relay_confirm_seconds", "outbox", relayed.Name()), uint64(1))

	// Handlers.
	assert.Equal(t, 0.0, val("eventkit_handler_errors_total", "handler", okName))
	assert.Equal(t, 3.0, val("eventkit_handler_errors_total", "handler", flakyName, "topic", placedTopic))
	assert.Equal(t, 3.0, val("eventkit_handler_retries_total", "handler", flakyName))
	assert.Equal(t, 1.0, val("eventkit_handler_errors_total", "handler", poisonName))
	assert.Equal(t, 0.0, val("eventkit_handler_retries_total", "handler", poisonName), "permanent: not retried")
	assert.Equal(t, 1.0, val("eventkit_dead_letters_total", "handler", poisonName, "topic", poisonTopic, "reason", "permanent"))
	assert.Equal(t, 1.0, val("eventkit_handler_delayed_retries_total", "handler", delayName, "topic", placedTopic, "level", "1"))
	assert.Equal(t, 0.0, val("eventkit_handler_delayed_retries_total", "handler", flakyName), "its immediate retries were enough")

	// Outboxes, read at scrape time.
	assert.Equal(t, 2.0, gaugeValue(t, promReg, "eventkit_outbox_pending", stuck.Name()))
	assert.Equal(t, 1.0, gaugeValue(t, promReg, "eventkit_outbox_scheduled", stuck.Name()), "the row due in an hour")
	assert.Greater(t, gaugeValue(t, promReg, "eventkit_outbox_oldest_pending_age_seconds", stuck.Name()), 0.0)
	assert.Equal(t, 1.0, gaugeValue(t, promReg, "eventkit_outbox_failed", parked.Name()))
	assert.Equal(t, 0.0, gaugeValue(t, promReg, "eventkit_outbox_pending", parked.Name()))
	assert.Equal(t, 4.0, gaugeValue(t, promReg, "eventkit_outbox_published", relayed.Name()))
	assert.Equal(t, 0.0, gaugeValue(t, promReg, "eventkit_outbox_oldest_pending_age_seconds", relayed.Name()))
	assert.Equal(t, 1.0, gaugeValue(t, promReg, "eventkit_outbox_up", relayed.Name()))
	assert.Equal(t, 1.0, gaugeValue(t, promReg, "eventkit_outbox_relay_active", relayed.Name()), "its relay runs")
	assert.Equal(t, 0.0, gaugeValue(t, promReg, "eventkit_outbox_relay_active", stuck.Name()), "no relay")
	n, err := testutil.GatherAndCount(promReg, "eventkit_outbox_pending",
		"eventkit_outbox_failed", "eventkit_outbox_published", "eventkit_outbox_scheduled", "eventkit_outbox_oldest_pending_age_seconds",
		"eventkit_outbox_up", "eventkit_outbox_relay_active")
	require.NoError(t, err)
	assert.Equal(t, 21, n, "7 series per watched outbox, each once")

	// And over HTTP, as Prometheus scrapes it.
	srv := httptest.NewServer(promhttp.HandlerFor(promReg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	text := string(body)
	for _, want := range []string{
		`eventkit_outbox_pending{outbox="` + stuck.Name() + `"} 2`,
		`eventkit_outbox_failed{outbox="` + parked.Name() + `"} 1`,
		`eventkit_relay_published_total{outbox="` + relayed.Name() + `",topic="` + placedTopic + `"} 3`,
		`eventkit_handler_retries_total{handler="` + flakyName + `",topic="` + placedTopic + `"} 3`,
		`eventkit_dead_letters_total{handler="` + poisonName + `",reason="permanent",topic="` + poisonTopic + `"} 1`,
		`eventkit_inbox_duplicates_total{handler="` + okName + `",topic="` + placedTopic + `"} 1`,
		`eventkit_handler_duration_seconds_count{handler="` + okName + `",topic="` + placedTopic + `"} 3`,
		`eventkit_relay_confirm_seconds_bucket{outbox="` + relayed.Name() + `",topic="` + placedTopic + `",le="+Inf"}`,
		`eventkit_relay_batch_size_bucket{outbox="` + relayed.Name() + `",le="1"}`,
	} {
		assert.Contains(t, text, want)
	}
}

// A watched outbox whose database is gone reports up 0 instead of failing
// the scrape.
func TestMetrics_OutboxDown(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("pgx", testenv.PostgresURL())
	require.NoError(t, err)
	if err := db.Ping(); err != nil {
		testenv.Unavailable(t, "PostgreSQL", err)
	}
	reg := events.NewRegistry()
	require.NoError(t, events.Register[Placed](reg, "m.placed"))
	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Name: testenv.Name(t, "m")})
	require.NoError(t, err)
	require.NoError(t, db.Close())
	promReg := prometheus.NewRegistry()
	m, err := metrics.New(promReg, metrics.Config{})
	require.NoError(t, err)
	m.WatchOutbox(ob)
	assert.Equal(t, 0.0, gaugeValue(t, promReg, "eventkit_outbox_up", ob.Name()))
	n, err := testutil.GatherAndCount(promReg, "eventkit_outbox_pending", "eventkit_outbox_up")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// families gathers reg and returns the metrics of family name whose labels
// include the given name/value pairs.
func series(t *testing.T, reg *prometheus.Registry, name string, labels ...string) []*dto.Metric {
	t.Helper()
	fams, err := reg.Gather()
	require.NoError(t, err)
	var out []*dto.Metric
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			out = append(out, m)
		}
	}
	return out
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	var v float64
	for _, m := range series(t, reg, name, labels...) {
		v += m.GetCounter().GetValue()
	}
	return v
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name, outbox string) float64 {
	t.Helper()
	ms := series(t, reg, name, "outbox", outbox)
	require.Len(t, ms, 1, "%s{outbox=%q}", name, outbox)
	return ms[0].GetGauge().GetValue()
}

func histCount(t *testing.T, reg *prometheus.Registry, name string, labels ...string) uint64 {
	var n uint64
	for _, m := range series(t, reg, name, labels...) {
		n += m.GetHistogram().GetSampleCount()
	}
	return n
}

func histSum(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	var v float64
	for _, m := range series(t, reg, name, labels...) {
		v += m.GetHistogram().GetSampleSum()
	}
	return v
}
