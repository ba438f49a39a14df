package docs

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
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
	cmd := exec.CommandContext(ctx, "bash", "-c", "exec "+command)
	cmd.Dir, err = filepath.Abs(repoRoot)
	require.NoError(t, err)
	cmd.Env = append(cleanEnv(), "DATABASE_URL="+dbURL, "TRANSPORT_URL="+amqpURL)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	}
	defer stop()

	var base string
	first := regexp.MustCompile(`^eventkit console on (http://127\.0\.0\.1:\d+)/ — read-only \(no operator token\)$`)
	select {
	case l := <-lines:
		m := first.FindStringSubmatch(l)
		require.NotNil(t, m, "first line %q, stderr %s", l, stderr.String())
		base = m[1]
	case <-ctx.Done():
		t.Fatalf("the console did not start: %s", stderr.String())
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

	stop()
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	assert.Equal(t, []string{"eventkit console stopped"}, rest)
	select {
	case err := <-exited:
		// go run exits 1 when its program was interrupted, whatever the
		// program's status (it is a signal it got too); the program said
		// it stopped.
		var exit *exec.ExitError
		if err != nil {
			require.ErrorAs(t, err, &exit, stderr.String())
		}
	case <-ctx.Done():
		t.Fatal("the console did not stop on SIGINT")
	}
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
