// Package metrics exports eventkit's measurements as Prometheus metrics.
//
// One Metrics, registered once, serves a whole service: it is the
// forwarder.RelayObserver of its relays (RelayConfig.Observer), the
// middleware.Observer of its consumer chains (DefaultConfig.Observer), and
// it reads the counters of the outboxes given to WatchOutbox at each scrape
// (Outbox.Stats: one COUNT over the table, so scrape every few seconds, not
// faster).
//
//	m, err := metrics.New(prometheus.DefaultRegisterer, metrics.Config{})
//	m.WatchOutbox(outbox)
//	relay, err := forwarder.NewRelay(outbox, pub, forwarder.RelayConfig{Observer: m})
//	chain, err := middleware.Default(middleware.DefaultConfig{Observer: m, …})
//	mux.Handle("GET /metrics", promhttp.Handler())
//
// # Metrics
//
// Names carry Config.Namespace ("eventkit" by default). Durations are in
// seconds.
//
//	name                                  type       labels                   what
//	eventkit_outbox_pending               gauge      outbox                   rows waiting to be relayed
//	eventkit_outbox_failed                gauge      outbox                   rows parked as failed
//	eventkit_outbox_published             gauge      outbox                   published rows kept (until Purge)
//	eventkit_outbox_scheduled             gauge      outbox                   rows waiting for their due time (not pending, no lag)
//	eventkit_outbox_oldest_pending_age_seconds gauge outbox                   age of the oldest pending row: the lag
//	eventkit_outbox_up                    gauge      outbox                   1 when the last scrape read the stats, 0 when it failed
//	eventkit_outbox_relay_active          gauge      outbox                   1 when a relay (of any process) holds the outbox's lock
//	eventkit_relay_batch_size             histogram  outbox                   rows per batch read
//	eventkit_relay_published_total        counter    outbox, topic            events confirmed by the broker (rate: publish rate)
//	eventkit_relay_publish_errors_total   counter    outbox, topic            publish calls that returned an error
//	eventkit_relay_confirm_seconds        histogram  outbox, topic            successful publish call until broker confirmation
//	eventkit_relay_parked_total           counter    outbox, topic            rows parked as failed
//	eventkit_handler_duration_seconds     histogram  handler, topic           each attempt of a handler
//	eventkit_handler_errors_total         counter    handler, topic           attempts that returned an error (panics included)
//	eventkit_handler_retries_total        counter    handler, topic           retries started
//	eventkit_handler_delayed_retries_total counter   handler, topic, level    messages handed to a delayed-retry level
//	eventkit_dead_letters_total           counter    handler, topic, reason   messages published to a dead-letter topic
//	eventkit_inbox_duplicates_total       counter    handler, topic           duplicates the inbox removed
//
// Label values are bounded by the application: outbox names, topics, handler
// names and the middleware.Reason values; never event ids.
//
// Where this package sits among the others, and the path of an event through
// them: docs/architecture.md in the repository.
package metrics
