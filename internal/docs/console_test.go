package docs

import (
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/testenv"
)

// consoleLine is README.md's command that starts the console.
var consoleLine = regexp.MustCompile(`^go run \./cmd/eventkit console --db "\$DATABASE_URL" --outbox orders_outbox --transport "\$TRANSPORT_URL" --listen 127\.0\.0\.1:8089$`)

// runConsole: README.md's "The web console" block, run as written with
// bash in the repository root (the port is made 0, so that parallel runs
// do not collide; the console prints where it listens), DATABASE_URL at a
// PostgreSQL schema of the test's own holding orders_outbox with a pending
// and a failed row, and TRANSPORT_URL at a RabbitMQ vhost of its own with a
// dead letter of orders.order_created made by the Default chain. The pages
// show those counts and no password, the dead-letter topic is found from
// the outbox's topics, and an interrupt stops the console.
func runConsole(t *testing.T, b block) {
	warm(t)
	cmds := commands(b.text)
	require.Len(t, cmds, 1, "%s", b)
	require.Regexp(t, consoleLine, norm(cmds[0]), "%s: the block changed: change the runner console too", b)
	db, dbURL := postgresSchema(t)
	amqpURL := testenv.AMQPVhost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	reg := events.NewRegistry()
	events.MustRegister[OrderCreated](reg, "orders.order_created", events.Version(2), events.Upcast(1, orderCreatedV1toV2))
	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Name: "orders_outbox", Source: "orders"})
	require.NoError(t, err)
	require.NoError(t, ob.Setup(ctx))
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, ob.Add(ctx, tx, OrderCreated{OrderID: "o-1"}, OrderCreated{OrderID: "o-2"}))
	require.NoError(t, tx.Commit())
	_, err = db.ExecContext(ctx, `UPDATE watermill_orders_outbox SET status = 2, last_error = 'broker refused the message: 312 NO_ROUTE' WHERE "offset" = (SELECT min("offset") FROM watermill_orders_outbox)`)
	require.NoError(t, err)
	dead := deadLetter(t, ctx, amqpURL, reg)

	command := strings.Replace(norm(cmds[0]), "127.0.0.1:8089", "127.0.0.1:0", 1)
	p := startLines(t, ctx, command, append(cleanEnv(), "DATABASE_URL="+dbURL, "TRANSPORT_URL="+amqpURL))
	defer p.interrupt()

	var base string
	first := regexp.MustCompile(`^eventkit console on (http://127\.0\.0\.1:\d+)/ — read-only \(no operator token\)$`)
	select {
	case l := <-p.lines:
		m := first.FindStringSubmatch(l)
		require.NotNil(t, m, "first line %q, stderr %s", l, p.stderr)
		base = m[1]
	case <-ctx.Done():
		t.Fatalf("the console did not start: %s", p.stderr)
	}
	get := func(path string) string {
		resp, err := http.Get(base + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", path, body)
		assert.NotContains(t, string(body), ":guest@", path)
		return string(body)
	}
	page := get("/outboxes")
	assert.Regexp(t, `data-live="outbox:orders_outbox:pending"[^>]*>1</b>`, page)
	assert.Regexp(t, `data-live="outbox:orders_outbox:failed"[^>]*>1</b>`, page)
	page = get("/dlq")
	assert.Regexp(t, `data-live="dlq:orders\.order_created\.dlq:eventkit-dlq:depth" class="dlq-depth">1</b>`, page, "found from the outbox's topics")
	page = get("/dlq/orders.order_created.dlq")
	assert.Contains(t, page, dead.UUID)
	assert.Contains(t, page, "inventory.reserve-stock")
	page = get("/outboxes/orders_outbox/failed")
	assert.Contains(t, page, "312 NO_ROUTE")

	p.stopped(t, ctx, "eventkit console stopped")
}

// cleanEnv is the process's environment less unset, as sh runs commands.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(unset, name) {
			env = append(env, kv)
		}
	}
	return env
}
