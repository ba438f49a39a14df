// Package monitoring holds no code: its folder ships the Prometheus alerting
// rules (eventkit-rules.yml) and their promtool unit tests
// (eventkit-rules.test.yml), and a Grafana dashboard (grafana-dashboard.json)
// over the metrics of package metrics. Its tests run promtool check rules and
// promtool test rules on them, prove that a broken rule makes the unit tests
// fail, and check that every expression names only metrics package metrics
// exports.
package monitoring
