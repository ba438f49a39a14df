package metrics

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/middleware"
)

// Defaults of Config.
const (
	NamespaceDefault    = "eventkit"
	StatsTimeoutDefault = 5 * time.Second
)

// DurationBucketsDefault are the default Config.DurationBuckets, in seconds:
// 1 ms to 30 s.
var DurationBucketsDefault = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// BatchBuckets are the buckets of eventkit_relay_batch_size.
var BatchBuckets = []float64{1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000}

// Config configures Metrics. The zero value is the default.
type Config struct {
	// Namespace prefixes every metric name. Defaults to NamespaceDefault.
	Namespace string
	// DurationBuckets are the buckets of the duration histograms, in
	// seconds. Defaults to DurationBucketsDefault.
	DurationBuckets []float64
	// StatsTimeout bounds the Outbox.Stats of one scrape. Defaults to
	// StatsTimeoutDefault.
	StatsTimeout time.Duration
	// ConstLabels are added to every metric (e.g. service). Defaults to
	// none.
	ConstLabels prometheus.Labels
}

// Metrics holds eventkit's Prometheus collectors. It implements
// forwarder.RelayObserver and middleware.Observer. It is safe for
// concurrent use.
type Metrics struct {
	cfg Config

	batch        *prometheus.HistogramVec
	published    *prometheus.CounterVec
	publishErrs  *prometheus.CounterVec
	confirm      *prometheus.HistogramVec
	parked       *prometheus.CounterVec
	handlerDur   *prometheus.HistogramVec
	handlerErrs  *prometheus.CounterVec
	retries      *prometheus.CounterVec
	delayed      *prometheus.CounterVec
	deadLetters  *prometheus.CounterVec
	duplicates   *prometheus.CounterVec
	outboxStats  *outboxCollector
	collectorSet []prometheus.Collector
}

var (
	_ forwarder.RelayObserver  = (*Metrics)(nil)
	_ middleware.Observer      = (*Metrics)(nil)
	_ middleware.DelayObserver = (*Metrics)(nil)
)

// New creates the collectors and registers them with reg. It returns the
// registration error (e.g. prometheus.AlreadyRegisteredError when a second
// Metrics with the same Namespace and ConstLabels is registered with reg).
func New(reg prometheus.Registerer, cfg Config) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("metrics: registerer is nil")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = NamespaceDefault
	}
	if cfg.DurationBuckets == nil {
		cfg.DurationBuckets = DurationBucketsDefault
	}
	if cfg.StatsTimeout <= 0 {
		cfg.StatsTimeout = StatsTimeoutDefault
	}
	ns, cl := cfg.Namespace, cfg.ConstLabels
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help, ConstLabels: cl}, labels)
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: name, Help: help, Buckets: buckets, ConstLabels: cl}, labels)
	}
	m := &Metrics{
		cfg:         cfg,
		batch:       histogram("relay_batch_size", "Rows per batch the relay read from the outbox.", BatchBuckets, "outbox"),
		published:   counter("relay_published_total", "Events the broker confirmed to the relay.", "outbox", "topic"),
		publishErrs: counter("relay_publish_errors_total", "Relay publish calls that returned an error.", "outbox", "topic"),
		confirm:     histogram("relay_confirm_seconds", "Time from a relay publish call to the broker's confirmation.", cfg.DurationBuckets, "outbox", "topic"),
		parked:      counter("relay_parked_total", "Outbox rows parked as failed.", "outbox", "topic"),
		handlerDur:  histogram("handler_duration_seconds", "Duration of each handler attempt.", cfg.DurationBuckets, "handler", "topic"),
		handlerErrs: counter("handler_errors_total", "Handler attempts that returned an error.", "handler", "topic"),
		retries:     counter("handler_retries_total", "Handler retries started.", "handler", "topic"),
		delayed:     counter("handler_delayed_retries_total", "Messages handed to a delayed-retry level after their immediate retries.", "handler", "topic", "level"),
		deadLetters: counter("dead_letters_total", "Messages published to a dead-letter topic.", "handler", "topic", "reason"),
		duplicates:  counter("inbox_duplicates_total", "Duplicate messages removed by the inbox.", "handler", "topic"),
		outboxStats: newOutboxCollector(ns, cl, cfg.StatsTimeout),
	}
	m.collectorSet = []prometheus.Collector{m.batch, m.published, m.publishErrs, m.confirm, m.parked,
		m.handlerDur, m.handlerErrs, m.retries, m.delayed, m.deadLetters, m.duplicates, m.outboxStats}
	for i, c := range m.collectorSet {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectorSet[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	return m, nil
}

// WatchOutbox makes every scrape report ob's counters and lag
// (eventkit_outbox_*), labelled with its name. Watching an outbox twice has
// no further effect.
func (m *Metrics) WatchOutbox(ob *forwarder.Outbox) { m.outboxStats.add(ob) }

// BatchRead implements forwarder.RelayObserver.
func (m *Metrics) BatchRead(outbox string, rows int) {
	m.batch.WithLabelValues(outbox).Observe(float64(rows))
}

// Published implements forwarder.RelayObserver.
func (m *Metrics) Published(outbox, topic string, messages, confirmed int, latency time.Duration, err error) {
	if confirmed > 0 {
		m.published.WithLabelValues(outbox, topic).Add(float64(confirmed))
	}
	if err != nil {
		m.publishErrs.WithLabelValues(outbox, topic).Inc()
		return
	}
	m.confirm.WithLabelValues(outbox, topic).Observe(latency.Seconds())
}

// Parked implements forwarder.RelayObserver.
func (m *Metrics) Parked(outbox, topic string) { m.parked.WithLabelValues(outbox, topic).Inc() }

// Handled implements middleware.Observer.
func (m *Metrics) Handled(ctx context.Context, took time.Duration, err error) {
	h, t := message.HandlerNameFromCtx(ctx), message.SubscribeTopicFromCtx(ctx)
	m.handlerDur.WithLabelValues(h, t).Observe(took.Seconds())
	if err != nil {
		m.handlerErrs.WithLabelValues(h, t).Inc()
	}
}

// Retried implements middleware.Observer.
func (m *Metrics) Retried(ctx context.Context, _ int) {
	m.retries.WithLabelValues(message.HandlerNameFromCtx(ctx), message.SubscribeTopicFromCtx(ctx)).Inc()
}

// DeadLettered implements middleware.Observer.
func (m *Metrics) DeadLettered(ctx context.Context, reason middleware.Reason) {
	m.deadLetters.WithLabelValues(message.HandlerNameFromCtx(ctx), message.SubscribeTopicFromCtx(ctx), string(reason)).Inc()
}

// Duplicate implements middleware.Observer.
func (m *Metrics) Duplicate(ctx context.Context) {
	m.duplicates.WithLabelValues(message.HandlerNameFromCtx(ctx), message.SubscribeTopicFromCtx(ctx)).Inc()
}

// Delayed implements middleware.DelayObserver.
func (m *Metrics) Delayed(ctx context.Context, level int) {
	m.delayed.WithLabelValues(message.HandlerNameFromCtx(ctx), message.SubscribeTopicFromCtx(ctx), strconv.Itoa(level)).Inc()
}

// outboxCollector reads Outbox.Stats at scrape time.
type outboxCollector struct {
	timeout                                             time.Duration
	pending, failed, published, scheduled, lag, upDescr *prometheus.Desc
	relayActive                                         *prometheus.Desc

	mu       sync.Mutex
	outboxes []*forwarder.Outbox
}

func newOutboxCollector(ns string, cl prometheus.Labels, timeout time.Duration) *outboxCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(ns, "outbox", name), help, []string{"outbox"}, cl)
	}
	return &outboxCollector{
		timeout:     timeout,
		pending:     desc("pending", "Outbox rows waiting to be relayed."),
		failed:      desc("failed", "Outbox rows parked as failed."),
		published:   desc("published", "Published outbox rows kept until purged."),
		scheduled:   desc("scheduled", "Outbox rows waiting for their due time (DeliverAt, DeliverAfter); not pending, no lag."),
		lag:         desc("oldest_pending_age_seconds", "Age of the oldest pending outbox row (the relay lag)."),
		upDescr:     desc("up", "1 when the outbox stats were read at this scrape, 0 when reading them failed."),
		relayActive: desc("relay_active", "1 when a relay (of any process) holds the outbox's lock and publishes, 0 when none does."),
	}
}

func (c *outboxCollector) add(ob *forwarder.Outbox) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range c.outboxes {
		if o == ob {
			return
		}
	}
	c.outboxes = append(c.outboxes, ob)
}

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.pending, c.failed, c.published, c.scheduled, c.lag, c.upDescr, c.relayActive} {
		ch <- d
	}
}

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	obs := append([]*forwarder.Outbox(nil), c.outboxes...)
	c.mu.Unlock()
	for _, ob := range obs {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		st, err := ob.Stats(ctx)
		cancel()
		name := ob.Name()
		if err != nil {
			ch <- prometheus.MustNewConstMetric(c.upDescr, prometheus.GaugeValue, 0, name)
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.upDescr, prometheus.GaugeValue, 1, name)
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(st.Pending), name)
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, float64(st.Failed), name)
		ch <- prometheus.MustNewConstMetric(c.published, prometheus.GaugeValue, float64(st.Published), name)
		ch <- prometheus.MustNewConstMetric(c.scheduled, prometheus.GaugeValue, float64(st.Scheduled), name)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, st.OldestPendingAge.Seconds(), name)
		ctx, cancel = context.WithTimeout(context.Background(), c.timeout)
		active, err := ob.ActiveRelay(ctx)
		cancel()
		if err == nil {
			v := 0.0
			if active.Active {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.relayActive, prometheus.GaugeValue, v, name)
		}
	}
}
