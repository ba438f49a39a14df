package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/testenv"
)

// consoleOutbox migrates an outbox named after the test (dropped when the
// test ends) with a failed row, a pending one and a scheduled one. The
// failed row is parked with SQL, as a relay parks it: the console tests do
// not need a relay, and one on PostgreSQL waits for every older open
// transaction of the cluster.
func consoleOutbox(t *testing.T, d database) *forwarder.Outbox {
	t.Helper()
	ctx := context.Background()
	name := testenv.Name(t, "cli")
	dropOutbox(t, d, name)
	code, _, errOut := eventkit(t, "migrate", "--db", d.url, "--outbox", name)
	require.Equal(t, exitOK, code, errOut)
	reg := events.NewRegistry()
	require.NoError(t, events.Register[event](reg, "cli.event"))
	ob, err := forwarder.NewOutbox(d.db, forwarder.OutboxConfig{Registry: reg, Name: name})
	require.NoError(t, err)
	tx, err := d.db.Begin()
	require.NoError(t, err)
	require.NoError(t, ob.Add(ctx, tx, event{N: 1}, event{N: 2}))
	require.NoError(t, ob.Add(ctx, tx, event{N: 3}, forwarder.DeliverAfter(24*time.Hour)))
	require.NoError(t, tx.Commit())
	_, err = d.db.Exec(`UPDATE "` + ob.Table() + `" SET "status" = 2, "last_error" = 'NO_ROUTE' WHERE "offset" = (SELECT min("offset") FROM "` + ob.Table() + `")`)
	require.NoError(t, err)
	return ob
}

// startConsole runs "eventkit console args…" until the test ends and
// returns its base URL and its exit code channel.
func startConsole(t *testing.T, args ...string) (string, *testenv.Buffer, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut testenv.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"console", "--listen", "127.0.0.1:0"}, args...), &out, &errOut)
	}()
	addr := regexp.MustCompile(`eventkit console on (http://\S+/) `)
	var base string
	require.Eventually(t, func() bool {
		select {
		case code := <-done:
			done <- code
			return true
		default:
		}
		m := addr.FindStringSubmatch(out.String())
		if m != nil {
			base = m[1]
		}
		return m != nil
	}, 30*time.Second, 10*time.Millisecond)
	require.NotEmpty(t, base, "stdout %q stderr %q", out.String(), errOut.String())
	var once sync.Once
	var code int
	stop := func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("console did not stop")
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return strings.TrimSuffix(base, "/"), &errOut, stop
}

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// eventkit console serves the outbox's counts on loopback, read-only
// without a token, shows no password of its URLs, and exits 0 when
// interrupted.
func TestConsoleCommand(t *testing.T) {
	t.Parallel()
	d := databases[0].open(t)
	ob := consoleOutbox(t, d)
	_, amqpURL := rabbitmq(t)
	u, err := url.Parse(d.url)
	require.NoError(t, err)
	u.User = url.UserPassword(u.User.Username(), "console-pw-123") // trust auth: never asked for
	base, errOut, stop := startConsole(t, "--db", u.String(), "--outbox", ob.Name(), "--transport", amqpURL)
	host, _, err := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host)

	code, body := httpGet(t, base+"/outboxes")
	require.Equal(t, http.StatusOK, code)
	assert.Regexp(t, `data-live="outbox:`+ob.Name()+`:pending"[^>]*>1</b>`, body)
	assert.Regexp(t, `data-live="outbox:`+ob.Name()+`:failed"[^>]*>1</b>`, body)
	assert.Regexp(t, `data-live="outbox:`+ob.Name()+`:scheduled"[^>]*>1</b>`, body)
	assert.NotContains(t, body, "console-pw-123")
	assert.Contains(t, body, "read-only")
	_, body = httpGet(t, base+"/dlq")
	assert.NotContains(t, body, ":guest@")

	resp, err := http.PostForm(base+"/outboxes/"+ob.Name()+"/failed/requeue", url.Values{})
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	st, err := ob.Stats(context.Background())
	require.NoError(t, err)
	assert.EqualValues(t, 1, st.Failed, "nothing changed")
	assert.Contains(t, errOut.String(), "console: request refused")

	assert.Equal(t, exitOK, stop())
}

// With a token (from the environment), a bearer request acts and the
// action is logged to standard error.
func TestConsoleCommandWithToken(t *testing.T) {
	d := databases[0].open(t)
	ob := consoleOutbox(t, d)
	tok := "env-token-" + testenv.Name(t, "tok")
	t.Setenv(tokenEnv, tok)
	base, errOut, stop := startConsole(t, "--db", d.url, "--outbox", ob.Name())
	req, err := http.NewRequest(http.MethodPost, base+"/outboxes/"+ob.Name()+"/failed/requeue", strings.NewReader("expect=1"))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	assert.Contains(t, string(b), `"rows":1`)
	assert.Contains(t, errOut.String(), `msg="console: action"`)
	assert.Contains(t, errOut.String(), "rows=1")
	assert.NotContains(t, errOut.String(), tok, "the token is never logged")
	assert.Equal(t, exitOK, stop())
}

// Bad usage exits 2 and a failed start 1, each saying why, before
// anything is served.
func TestConsoleCommandErrors(t *testing.T) {
	t.Parallel()
	d := databases[0].open(t)
	ob := consoleOutbox(t, d)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{}, exitUsage, "give --db, --transport or both"},
		{[]string{"--outbox", "x", "--transport", "mem://"}, exitUsage, "--outbox and --inbox need --db"},
		{[]string{"--dlq", "x.dlq", "--db", d.url}, exitUsage, "--dlq needs --transport"},
		{[]string{"--db", d.url, "--listen", "8089"}, exitUsage, `--listen "8089": want host:port`},
		{[]string{"--db", d.url, "--outbox", ob.Name(), "--token", "short"}, exitUsage, "--token is too short"},
		{[]string{"--db", d.url, "--outbox", "bad name"}, exitUsage, "--outbox"},
		{[]string{"--transport", "nats://x"}, exitUsage, "--transport"},
		{[]string{"--db", d.url, "--bogus"}, exitUsage, "unknown flag: --bogus"},
		{[]string{"--db", d.url, "--outbox", ob.Name(), "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"--db", d.url, "--outbox", "missing_outbox_0"}, exitError, "does not exist"},
		{[]string{"--db", d.url, "--outbox", ob.Name(), "--inbox", "missing_inbox_0"}, exitError, "does not exist"},
		{[]string{"--db", d.url, "--outbox", ob.Name(), "--listen", busy.Addr().String()}, exitError, "address already in use"},
	} {
		code, out, errOut := eventkit(t, append([]string{"console"}, tc.args...)...)
		assert.Equal(t, tc.code, code, "%v: %s", tc.args, errOut)
		assert.Contains(t, errOut, tc.want, tc.args)
		assert.NotContains(t, out, "eventkit console on", tc.args)
	}
	code, out, _ := eventkit(t, "console", "--help")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "--listen address")
	assert.Contains(t, out, `(default "127.0.0.1:8089")`)
}
