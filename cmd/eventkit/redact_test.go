package main

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/b2131a45/eventkit/internal/testenv"
)

// TestNoCommandShowsAPassword runs every command that takes a URL with URLs
// that fail in every way a URL can — unreachable host, bad option, unknown
// scheme, a wrong password on the real RabbitMQ, an unescaped '#' or '?' in
// the password — and with hostile topic, group and table names: each ends
// with a non-zero exit and a message, and the password is nowhere in the
// output.
func TestNoCommandShowsAPassword(t *testing.T) {
	t.Parallel()
	const secret = "Cli-s3cret-Pw"
	amqpWrong := "amqp://guest:" + secret + "@" + mustHost(testenv.AMQPURL()) + "/?dial_timeout=3s"
	dbs := []string{
		"postgres://u:" + secret + "@127.0.0.1:1/test?connect_timeout=2",
		"postgres://u:" + secret + "@127.0.0.1:1/test?sslmode=bogus",
		"postgres://u:" + secret + "@127.0.0.1:1/test?no_such_option=1",
		"mysql://u:" + secret + "@127.0.0.1:1/test?timeout=2s",
		"mysql://u:" + secret + "@127.0.0.1:1/test?tls=maybe",
		"oracle://u:" + secret + "@h/db",
		"postgres://u:" + secret + "#x@127.0.0.1:1/test",
		"postgres://u:pre?" + secret + "@127.0.0.1:1/test",
	}
	brokers := []string{
		amqpWrong,
		"amqp://guest:" + secret + "@127.0.0.1:1/?dial_timeout=1s",
		"amqps://guest:" + secret + "@127.0.0.1:1/?dial_timeout=1s",
		"amqp://guest:" + secret + "@127.0.0.1:1/?prefetch=lots",
		"kafka://alice:" + secret + "@127.0.0.1:1?dial_timeout=1s&sasl_mechanism=SCRAM-SHA-256",
		"kafka://alice:" + secret + "@127.0.0.1:1?sasl_mechanism=KERBEROS",
		"postgres://u:" + secret + "@127.0.0.1:1/test?connect_timeout=2",
		"amqp://guest:pre#" + secret + "@127.0.0.1:1/",
		"amqp://guest:pre?" + secret + "@127.0.0.1:1/",
	}
	var runs [][]string
	for _, db := range dbs {
		for _, cmd := range [][]string{{"outbox", "stats"}, {"outbox", "pending"}, {"outbox", "failed"}, {"outbox", "requeue", "some-id"},
			{"outbox", "purge", "--older-than", "1h"}, {"migrate"}} {
			runs = append(runs, append(cmd, "--db", db))
		}
	}
	for _, b := range brokers {
		runs = append(runs, []string{"dlq", "list", "--transport", b, "--topic", "orders.dlq", "--idle", "100ms"},
			[]string{"dlq", "replay", "--transport", b, "--topic", "orders.dlq", "--idle", "100ms"})
	}
	// Hostile names: refused, named, and still no password.
	runs = append(runs,
		[]string{"outbox", "stats", "--db", dbs[0], "--outbox", `x"; DROP TABLE y; --`},
		[]string{"dlq", "list", "--transport", "mem://", "--topic", `t"; DROP TABLE y; --`, "--idle", "100ms"},
		[]string{"dlq", "list", "--transport", "mem://", "--topic", "t.dlq", "--group", "g h/../x", "--idle", "100ms"},
	)
	for _, args := range runs {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			code, out, errOut := eventkit(t, args...)
			assert.NotEqual(t, exitOK, code, "stdout %q stderr %q", out, errOut)
			assert.NotEmpty(t, errOut)
			assert.NotContains(t, out+errOut, secret)
			assert.NotContains(t, out+errOut, url.PathEscape(secret))
		})
	}
}

func mustHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	return u.Host
}
