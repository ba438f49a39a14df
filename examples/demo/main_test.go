package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/b2131a45/eventkit/internal/dburl"
	"github.com/b2131a45/eventkit/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.Main(m, goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"))
}

// demo is the demo's run function running in the test's process.
type demo struct {
	out, errOut *testenv.Buffer
	urls        map[string]string // orders, inventory, payments, console
}

// loopback are the flags that put every part on a free loopback port, so
// that parallel runs do not collide.
var loopback = []string{"-orders-addr", "127.0.0.1:0", "-inventory-addr", "127.0.0.1:0", "-payments-addr", "127.0.0.1:0", "-console-addr", "127.0.0.1:0"}

var partURL = regexp.MustCompile(`(?m)^  (orders|inventory|payments|console) +(http://127\.0\.0\.1:\d+)/?$`)

// start runs the demo with env as its environment until the test ends,
// and waits until it printed its next steps. At the end it interrupts it
// and checks that it stopped cleanly.
func start(t *testing.T, env map[string]string, args ...string) *demo {
	t.Helper()
	d := &demo{out: &testenv.Buffer{}, errOut: &testenv.Buffer{}, urls: map[string]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, slices.Concat(loopback, args), func(k string) string { return env[k] }, d.out, d.errOut)
	}()
	t.Cleanup(func() {
		cancel() // as SIGINT does: main's context ends
		select {
		case err := <-done:
			assert.NoError(t, err)
			assert.True(t, strings.HasSuffix(d.out.String(), "\ndemo stopped\n"), "the demo says it stopped:\n%s", d.out)
		case <-time.After(time.Minute):
			t.Error("the demo did not stop within a minute of its interrupt")
		}
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", d.out, d.errOut)
		}
	})
	deadline := time.After(3 * time.Minute) // SQLite's Wasm build compiles at the first connection, slowly under -race
	for !strings.Contains(d.out.String(), "Ctrl-C stops the demo.") {
		select {
		case err := <-done:
			t.Fatalf("the demo stopped at start: %v\nstdout:\n%s\nstderr:\n%s", err, d.out, d.errOut)
		case <-deadline:
			t.Fatalf("the demo did not start\nstdout:\n%s\nstderr:\n%s", d.out, d.errOut)
		case <-time.After(20 * time.Millisecond):
		}
	}
	for _, m := range partURL.FindAllStringSubmatch(d.out.String(), -1) {
		d.urls[m[1]] = m[2]
	}
	require.Len(t, d.urls, 4, "the URLs of the services and the console:\n%s", d.out)
	return d
}

// do sends a request and returns its status and body.
func do(t *testing.T, method, u string, body io.Reader, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func get(t *testing.T, u string) (int, string) { return do(t, http.MethodGet, u, nil) }

const dlqPath = "/dlq/orders.order_created.dlq"

var (
	groupRow = regexp.MustCompile(`data-group="([0-9a-f]+)"><td>([^<]*)</td><td>([^<]*)</td><td><code>([^<]*)</code></td><td class="n"><b class="group-count">(\d+)</b>`)
	letterID = regexp.MustCompile(`href="/dlq/orders\.order_created\.dlq/letter/([^"?]+)"`)
	depthFig = regexp.MustCompile(`id="dlq-depth"[^>]*>(\d+)</b>`)
)

// dlqPage returns the console's page of orders.order_created.dlq once it
// shows a finished reading of the topic.
func (d *demo) dlqPage(t *testing.T) string {
	t.Helper()
	var page string
	require.Eventually(t, func() bool {
		code, body := get(t, d.urls["console"]+dlqPath+"?refresh=1")
		page = body
		return code == http.StatusOK && depthFig.MatchString(body) && !strings.Contains(body, "being read")
	}, 30*time.Second, 100*time.Millisecond, "the dead-letter page: %s", page)
	return page
}

func depth(page string) string {
	if m := depthFig.FindStringSubmatch(page); m != nil {
		return m[1]
	}
	return ""
}

// story is what a new user does with the demo (the README's steps):
// the three poison orders are one group in the console; a mutation without
// the token is refused and changes nothing; the stock is fixed over the
// inventory API; the group is replayed through the console with the token
// (byFilter: as the README's script line does, by reason and error, not by
// the group's key as the page's button does); the dead-letter topic
// empties and each poison order is handled once by inventory, with the
// event id of its dead letter, and paid.
func story(t *testing.T, d *demo, token, dbURL string, byFilter bool) {
	out := d.out.String()
	assert.Regexp(t, `(?m)^placed 1 order of 2 × SKU-1: \S+ is paid$`, out)
	m := regexp.MustCompile(`(?m)^placed 3 orders of 1 × SKU-404, which nobody sells: (.+)$`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	orders := strings.Split(m[1], ", ")
	require.Len(t, orders, 3)
	assert.Contains(t, out, "orders.order_created.dlq holds 3 dead letter(s)\n")
	assert.Contains(t, out, "curl -s -XPUT "+d.urls["inventory"]+"/stock/SKU-404 -d '{\"available\":10}'")

	// One group, grouped by error, of the three dead letters.
	page := d.dlqPage(t)
	groups := groupRow.FindAllStringSubmatch(page, -1)
	require.Len(t, groups, 1, "one group: %s", page)
	g := groups[0]
	assert.Equal(t, "inventory.reserve-stock", g[2])
	assert.Equal(t, "permanent", g[3])
	assert.Contains(t, g[4], "unknown SKU")
	assert.Equal(t, "3", g[5])
	assert.Equal(t, "3", depth(page))
	var letters []string
	for _, l := range letterID.FindAllStringSubmatch(page, -1) {
		if !slices.Contains(letters, l[1]) {
			letters = append(letters, l[1])
		}
	}
	require.Len(t, letters, 3, "the event ids of the dead letters")
	code, _ := get(t, d.urls["console"]+"/dlq/inventory.stock_reserved.dlq")
	assert.Equal(t, http.StatusOK, code, "the dead-letter topics of every event topic are shown")

	// Without the token, nothing changes.
	replay := d.urls["console"] + dlqPath + "/replay"
	form := url.Values{"group_key": {g[1]}, "expect": {"3"}}.Encode()
	confirm := dlqPath + "/confirm?action=replay&group_key=" + g[1]
	if byFilter {
		form = url.Values{"reason": {"permanent"}, "error": {"SKU-404"}, "expect": {"3"}}.Encode()
		confirm = dlqPath + "/confirm?action=replay&" + form
	}
	for name, header := range map[string][]string{
		"no token":                           nil,
		"wrong token":                        {"Authorization", "Bearer not-the-token-0123456789"},
		"a login's form without its session": {"Origin", d.urls["console"]},
	} {
		code, body := do(t, http.MethodPost, replay, strings.NewReader(form),
			append([]string{"Content-Type", "application/x-www-form-urlencoded"}, header...)...)
		assert.Contains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, code, "%s: %s", name, body)
	}
	code, body := do(t, http.MethodPost, replay, strings.NewReader(form), "Content-Type", "application/x-www-form-urlencoded",
		"Authorization", "Bearer "+token, "Origin", "http://evil.example")
	assert.Equal(t, http.StatusForbidden, code, "cross-site, even with the token: %s", body)
	assert.Equal(t, "3", depth(d.dlqPage(t)), "the refused requests replayed nothing")

	// Fix the cause, then replay the group with the token.
	code, body = do(t, http.MethodPut, d.urls["inventory"]+"/stock/SKU-404", strings.NewReader(`{"available":10}`))
	require.Equal(t, http.StatusOK, code, body)
	code, body = get(t, d.urls["console"]+confirm)
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `id="confirm-count">3</b>`, "the confirm page shows the count first")
	code, body = do(t, http.MethodPost, replay, strings.NewReader(form), "Content-Type", "application/x-www-form-urlencoded",
		"Authorization", "Bearer "+token)
	require.Equal(t, http.StatusOK, code, body)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &res), body)
	assert.EqualValues(t, 3, res["messages"], body)
	assert.Contains(t, res["result"], "replayed 3 of the 3", body)

	for _, id := range orders {
		require.Eventually(t, func() bool {
			_, body := get(t, d.urls["orders"]+"/orders/"+id)
			return strings.Contains(body, `"status":"paid"`)
		}, time.Minute, 50*time.Millisecond, "order %s is paid after the replay", id)
	}
	require.Eventually(t, func() bool { return depth(d.dlqPage(t)) == "0" }, 30*time.Second, 100*time.Millisecond, "the dead-letter topic empties")
	time.Sleep(time.Second) // a second handling would come meanwhile
	_, body = get(t, d.urls["inventory"]+"/stock/SKU-404")
	assert.JSONEq(t, `{"sku":"SKU-404","available":7}`, body, "one reservation per order")
	assert.Regexp(t, `msg="console: action".*action="dlq replay".*messages=3`, d.errOut.String(), "the audit line")

	// Inventory's inbox holds each dead letter's event id once: handled
	// with the same id; one reservation per poison order.
	db, err := dburl.Open(dbURL)
	require.NoError(t, err)
	defer db.Close()
	rows, err := db.Query(`SELECT event_id FROM inventory_inbox WHERE handler = 'inventory.reserve-stock'`)
	require.NoError(t, err)
	var handled []string
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		handled = append(handled, id)
	}
	require.NoError(t, rows.Err())
	rows.Close()
	for _, id := range letters {
		assert.Contains(t, handled, id, "dead letter %s handled with its event id", id)
	}
	assert.Len(t, handled, 4, "the good order and the three replayed ones")
	var reserved int
	require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM reservations WHERE sku = 'SKU-404'`).Scan(&reserved))
	assert.Equal(t, 3, reserved)
}

// go run ./examples/demo as a new user runs it: no service, no token set.
// The demo makes a token and prints it; the story goes through with it.
func TestDemoOnEmbeddedDefaults(t *testing.T) {
	t.Parallel()
	d := start(t, nil)
	out := d.out.String()
	assert.Contains(t, out, "transport mem://, database sqlite:")
	tok := regexp.MustCompile(`(?m)^  operator token ([0-9a-f]{32}) \(made for this run: set \$EVENTKIT_CONSOLE_TOKEN to choose one\)$`).FindStringSubmatch(out)
	require.NotNil(t, tok, out)
	db := regexp.MustCompile(`database (sqlite:\S+) \(a temporary file`).FindStringSubmatch(out)
	require.NotNil(t, db, out)
	story(t, d, tok[1], db[1], false)
}

// The demo on PostgreSQL and RabbitMQ (TRANSPORT_URL, DATABASE_URL), with
// the operator token of EVENTKIT_CONSOLE_TOKEN, which it does not print.
func TestDemoOnPostgresAndRabbitMQ(t *testing.T) {
	t.Parallel()
	amqpURL := testenv.AMQPVhost(t)
	dbURL := testenv.PostgresSchema(t, "demo")
	token := "a-token-of-the-operators-own"
	d := start(t, map[string]string{"TRANSPORT_URL": amqpURL, "DATABASE_URL": dbURL, tokenEnv: token})
	out := d.out.String()
	assert.Contains(t, out, "transport amqp://guest:xxxxx@")
	assert.Contains(t, out, "  operator token from $EVENTKIT_CONSOLE_TOKEN\n")
	assert.NotContains(t, out, token)
	story(t, d, token, dbURL, true)
}

// Bad flags and a short token are refused before anything starts, naming
// what is wrong.
func TestDemoRefusesBadInput(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		err  string
	}{
		"unknown flag":  {[]string{"-nope"}, nil, "flag provided but not defined: -nope"},
		"an argument":   {[]string{"now"}, nil, `unexpected argument "now"`},
		"short token":   {nil, map[string]string{tokenEnv: "short"}, "$EVENTKIT_CONSOLE_TOKEN is too short: use at least 16 random characters"},
		"bad transport": {[]string{"-transport", "nats://x"}, nil, "-transport: "},
		"bad stock":     {slices.Concat(loopback, []string{"-stock", "SKU-1"}), nil, `inventory: STOCK: "SKU-1" is not SKU=quantity`},
		"busy port":     {slices.Concat(loopback, []string{"-orders-addr", busy.Addr().String()}), nil, "orders http: listen tcp " + busy.Addr().String()},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errOut testenv.Buffer
			err := run(context.Background(), tc.args, func(k string) string { return tc.env[k] }, &out, &errOut)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
			assert.NotContains(t, out.String(), "Next steps", "nothing started")
		})
	}
}

// -no-orders places nothing: the console shows the three dead-letter
// topics, declared at start, empty.
func TestDemoWithoutOrders(t *testing.T) {
	t.Parallel()
	d := start(t, nil, "-no-orders")
	assert.NotContains(t, d.out.String(), "placed ")
	assert.Contains(t, d.out.String(), "curl -s "+d.urls["orders"]+"/orders/<order_id>")
	code, page := get(t, d.urls["console"]+"/dlq")
	require.Equal(t, http.StatusOK, code, page)
	for _, topic := range []string{"orders.order_created.dlq", "inventory.stock_reserved.dlq", "payments.payment_processed.dlq"} {
		assert.Regexp(t, `data-live="dlq:`+regexp.QuoteMeta(topic)+`:eventkit-dlq:depth" class="dlq-depth">0</b>`, page, topic)
	}
}
