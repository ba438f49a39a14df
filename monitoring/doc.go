// Package monitoring holds no code: its folder ships the Prometheus alerting
// rules (eventkit-rules.yml) and their promtool unit tests
// (eventkit-rules.test.yml), and a Grafana dashboard (grafana-dashboard.json)
// over the metrics of package metrics. Its tests run promtool check rules and
// promtool test rules on them, prove that a broken rule makes the unit tests
// fail, check that every expression names only metrics package metrics
// exports, and run a real Prometheus with the shipped rules over the sample
// services (orders twice: an API replica with RELAY=off and a replica that
// runs the relay; inventory; payments): the lag and no-relay alerts fire
// when the relay replica stops, and end when it is back.
package monitoring
