package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// AMQPNode is the Erlang node name of AMQPURL, for rabbitmqctl -n; empty
// (the default) means rabbitmqctl's own default node.
func AMQPNode() string {
	return os.Getenv("EVENTKIT_RABBITMQ_NODE")
}

// rabbitmqctl runs rabbitmqctl (EVENTKIT_RABBITMQCTL, split on spaces,
// when set: "docker compose exec -T rabbitmq rabbitmqctl" for a broker in
// a container) on node and returns its output lines.
func rabbitmqctl(ctx context.Context, node string, args ...string) ([]string, error) {
	cmd := strings.Fields(env("EVENTKIT_RABBITMQCTL", "rabbitmqctl"))
	cmd = append(cmd, "-q")
	if node != "" {
		cmd = append(cmd, "-n", node)
	}
	cmd = append(cmd, args...)
	if strings.HasPrefix(args[0], "list_") {
		cmd = append(cmd, "--no-table-headers")
	}
	var stdout, stderr bytes.Buffer
	c := exec.CommandContext(ctx, cmd[0], cmd[1:]...)
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", strings.Join(cmd, " "), err, strings.TrimSpace(stderr.String()))
	}
	var lines []string
	for _, l := range strings.Split(stdout.String(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// sweepRabbitMQ deletes the queues and exchanges of the vhost of rawURL
// (listed with rabbitmqctl on node, deleted over AMQP) whose names contain
// one of names, and with vhosts the virtual hosts (AMQPVhost's).
func sweepRabbitMQ(ctx context.Context, rawURL, node string, vhosts bool, names []string, rep *report) error {
	uri, err := amqp091.ParseURI(rawURL)
	if err != nil {
		return err
	}
	conn, err := amqp091.DialConfig(rawURL, amqp091.Config{Dial: amqp091.DefaultDial(connectTimeout)})
	if err != nil {
		return fmt.Errorf("%w: %v", errDown, err)
	}
	defer conn.Close()
	queues, err := rabbitmqctl(ctx, node, "list_queues", "-p", uri.Vhost, "name")
	if err != nil {
		return err
	}
	exchanges, err := rabbitmqctl(ctx, node, "list_exchanges", "-p", uri.Vhost, "name")
	if err != nil {
		return err
	}
	where := "RabbitMQ " + uri.Host + fmt.Sprintf(":%d", uri.Port)
	for _, q := range queues {
		if owned(q, names) {
			del(conn, where, "queue", q, rep, func(ch *amqp091.Channel) error {
				_, err := ch.QueueDelete(q, false, false, false)
				return err
			})
		}
	}
	for _, x := range exchanges {
		if owned(x, names) {
			del(conn, where, "exchange", x, rep, func(ch *amqp091.Channel) error {
				return ch.ExchangeDelete(x, false, false)
			})
		}
	}
	if !vhosts {
		return nil
	}
	hosts, err := rabbitmqctl(ctx, node, "list_vhosts", "name")
	if err != nil {
		return err
	}
	for _, h := range hosts {
		if owned(h, names) {
			if _, err := rabbitmqctl(ctx, node, "delete_vhost", h); err != nil {
				rep.fail(fmt.Errorf("%s: delete vhost %s: %w", where, h, err))
				continue
			}
			rep.remove(where+" vhost", h)
		}
	}
	return nil
}

// del runs op on a channel of its own (a failed operation closes its
// channel); an object already gone is no error.
func del(conn *amqp091.Connection, where, kind, name string, rep *report, op func(*amqp091.Channel) error) {
	ch, err := conn.Channel()
	if err == nil {
		err = op(ch)
		_ = ch.Close()
	}
	var aerr *amqp091.Error
	switch {
	case errors.As(err, &aerr) && aerr.Code == amqp091.NotFound:
		// Gone since the listing (auto-delete).
	case err != nil:
		rep.fail(fmt.Errorf("%s: delete %s %s: %w", where, kind, name, err))
	default:
		rep.remove(where+" "+kind, name)
	}
}

// AMQPVhost returns the URL of a RabbitMQ virtual host of t's own on the
// node of AMQPURL, made with rabbitmqctl and deleted, with everything in
// it, when t ends (and by Main's sweep). It is for code under test that
// declares fixed queue and exchange names, such as the examples' services,
// which would otherwise share them with every other run on the broker.
// It stops the test (Unavailable) when RabbitMQ or rabbitmqctl is missing.
func AMQPVhost(t testing.TB) string {
	t.Helper()
	base := AMQPURL()
	conn, err := amqp091.DialConfig(base, amqp091.Config{Dial: amqp091.DefaultDial(connectTimeout)})
	if err != nil {
		Unavailable(t, "RabbitMQ", err)
	}
	_ = conn.Close()
	uri, err := amqp091.ParseURI(base)
	if err != nil {
		t.Fatalf("EVENTKIT_AMQP_URL: %v", err)
	}
	name := Name(t, "vh")
	ctx := context.Background()
	if _, err := rabbitmqctl(ctx, AMQPNode(), "add_vhost", name); err != nil {
		Unavailable(t, "rabbitmqctl", err)
	}
	t.Cleanup(func() {
		if _, err := rabbitmqctl(context.Background(), AMQPNode(), "delete_vhost", name); err != nil {
			t.Errorf("delete the vhost of the test: %v", err)
		}
	})
	if _, err := rabbitmqctl(ctx, AMQPNode(), "set_permissions", "-p", name, uri.Username, ".*", ".*", ".*"); err != nil {
		t.Fatalf("let %s use the vhost: %v", uri.Username, err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("EVENTKIT_AMQP_URL: %v", err)
	}
	u.Path, u.RawPath = "/"+name, ""
	return u.String()
}
