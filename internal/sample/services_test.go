package sample

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/dburl"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports"
	"github.com/b2131a45/eventkit/transports/amqp"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// logs is a JSON log sink for a test: the handler the services use by
// default (slog.NewJSONHandler, default options, so level INFO).
type logs struct{ testenv.Buffer }

func (l *logs) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(l, nil)) }

// records returns the lines logged so far with message msg.
func (l *logs) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		if msg == "" || rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// services is the three sample services on one mem:// transport and one
// SQLite database, with the orders and inventory APIs on one HTTP server.
type services struct {
	url       string
	db        string
	logs      *logs
	orders    *Orders
	inventory *Inventory
	payments  *Payments
}

func setup(t *testing.T) *services {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &services{db: filepath.Join(t.TempDir(), "sample.db"), logs: &logs{}}
	db, err := dburl.Open("sqlite:" + s.db)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	tr, err := transports.Open(ctx, "mem://")
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	reg, err := NewRegistry()
	require.NoError(t, err)
	node := func(name string) *Node {
		n, err := NewNode(ctx, NodeConfig{Name: name, DB: db, Transport: tr, Registry: reg, Logger: s.logs.logger()})
		require.NoError(t, err)
		return n
	}
	s.orders = &Orders{Node: node("orders")}
	s.inventory = &Inventory{Node: node("inventory")}
	s.payments = &Payments{Node: node("payments")}
	require.NoError(t, s.orders.Setup(ctx))
	require.NoError(t, s.inventory.Setup(ctx, map[string]int{"SKU-1": 10}))
	require.NoError(t, s.payments.Setup(ctx))

	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() }) // before the transport and the database close
	for _, n := range []*Node{s.orders.Node, s.inventory.Node, s.payments.Node} {
		wg.Go(func() {
			if err := n.Run(ctx); err != nil {
				t.Errorf("%v", err)
			}
		})
		select {
		case <-n.Router.Running():
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not start", n.Name)
		}
	}
	mux := http.NewServeMux()
	s.orders.Routes(mux)
	s.inventory.Routes(mux)
	srv := httptest.NewServer(jsonErrors(mux))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// call sends a request and returns the status and the decoded JSON body.
func call(t *testing.T, method, url, body string, header http.Header) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out), "%s %s answered %d %q, not JSON", method, url, resp.StatusCode, raw)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	return resp.StatusCode, resp.Header, out
}

func TestServices(t *testing.T) {
	t.Parallel()
	s := setup(t)

	t.Run("log an order created and each event handled, at INFO", func(t *testing.T) {
		code, _, placed := call(t, http.MethodPost, s.url+"/orders",
			`{"customer_email":"ada@example.com","total_cents":4990,"items":[{"sku":"SKU-1","quantity":2}]}`,
			http.Header{"X-Correlation-Id": {"log-test"}})
		require.Equal(t, http.StatusCreated, code, placed)
		id := placed["order_id"].(string)
		require.Eventually(t, func() bool {
			_, _, o := call(t, http.MethodGet, s.url+"/orders/"+id, "", nil)
			return o["status"] == "paid"
		}, 30*time.Second, 10*time.Millisecond)

		created := s.logs.records(t, "order created")
		require.Len(t, created, 1, s.logs)
		assert.Equal(t, "INFO", created[0]["level"])
		assert.Equal(t, id, created[0]["order_id"])
		assert.Equal(t, "log-test", created[0]["correlation_id"])

		handled := map[string]map[string]any{}
		require.Eventually(t, func() bool {
			for _, rec := range s.logs.records(t, "event handled") {
				handled[rec["handler"].(string)] = rec
			}
			return len(handled) == 3
		}, 10*time.Second, 10*time.Millisecond, "want one line per handler: %s", s.logs)
		for handler, event := range map[string]string{
			"inventory.reserve-stock": OrderCreatedName,
			"payments.charge":         StockReservedName,
			"orders.mark-paid":        PaymentProcessedName,
		} {
			rec := handled[handler]
			require.NotNil(t, rec, handler)
			assert.Equal(t, "INFO", rec["level"], handler)
			assert.Equal(t, event, rec["event_name"], handler)
			assert.NotEmpty(t, rec["event_id"], handler)
			assert.Equal(t, "log-test", rec["correlation_id"], handler)
		}
		assert.Len(t, s.logs.records(t, "event handled"), 3, "one line per event handled")
	})

	t.Run("errors are JSON with the right status", func(t *testing.T) {
		for _, tc := range []struct {
			name, method, path, body string
			code                     int
			err                      string
		}{
			{"unknown SKU", "GET", "/stock/NOPE", "", 404, `no such SKU "NOPE"`},
			{"unknown order", "GET", "/orders/NOPE", "", 404, `no such order "NOPE"`},
			{"unknown field", "POST", "/orders", `{"bogus":1}`, 400, `bad order: json: unknown field "bogus"`},
			{"not JSON", "POST", "/orders", `nope`, 400, "bad order: invalid character"},
			{"no items", "POST", "/orders", `{"customer_email":"a@b.c","items":[]}`, 400, "bad order: customer_email, items"},
			{"bad quantity", "POST", "/orders", `{"customer_email":"a@b.c","items":[{"sku":"SKU-1","quantity":0}]}`, 400, "quantity > 0"},
			{"a SKU twice", "POST", "/orders", `{"customer_email":"a@b.c","items":[{"sku":"SKU-1","quantity":1},{"sku":"SKU-1","quantity":2}]}`, 400, `sku "SKU-1" is listed twice`},
			{"too large", "POST", "/orders", `{"customer_email":"` + strings.Repeat("a", 2<<20) + `"}`, 413, "larger than 1048576 bytes"},
			{"unknown route", "GET", "/nope", "", 404, "no route for GET /nope"},
			{"wrong method", "DELETE", "/orders/x", "", 405, "DELETE /orders/x is not allowed"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, header, body := call(t, tc.method, s.url+tc.path, tc.body, nil)
				assert.Equal(t, tc.code, code, body)
				require.Len(t, body, 1, `want {"error": "…"}`)
				assert.Contains(t, body["error"], tc.err)
				assert.NotContains(t, strings.ToLower(body["error"].(string)), "sql")
				if code == http.StatusMethodNotAllowed {
					assert.Equal(t, "GET, HEAD", header.Get("Allow"))
				}
			})
		}
	})

	t.Run("a database failure is a 500 that hides the driver's error and logs it", func(t *testing.T) {
		_, err := s.inventory.DB.Exec(`DROP TABLE stock`)
		require.NoError(t, err)
		code, _, body := call(t, http.MethodGet, s.url+"/stock/SKU-1", "", nil)
		assert.Equal(t, http.StatusInternalServerError, code)
		assert.Equal(t, map[string]any{"error": "could not read the stock"}, body)
		failed := s.logs.records(t, "could not read the stock")
		require.Len(t, failed, 1)
		assert.Equal(t, "ERROR", failed[0]["level"])
		assert.Contains(t, failed[0]["error"], "no such table", "the cause is in the log")
	})
}

func TestNamespace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ns                    Namespace
		topic, handler, table string
	}{
		{"", "orders.order_created", "inventory.reserve-stock", "orders_outbox"},
		{QuickstartNamespace, "quickstart.orders.order_created", "quickstart.inventory.reserve-stock", "quickstart_orders_outbox"},
	} {
		assert.Equal(t, tc.topic, tc.ns.Topic(OrderCreatedName))
		assert.Equal(t, tc.handler, tc.ns.Handler("inventory.reserve-stock"))
		assert.Equal(t, tc.table, tc.ns.Table("orders_outbox"))
		assert.NoError(t, tc.ns.validate())
	}
	for _, bad := range []Namespace{"Quick", "1st", "quick.start", "quick-start", "a_very_long_namespace"} {
		assert.Error(t, bad.validate(), "%q", bad)
	}
}

// TestServiceErrors checks what a user sees when a service cannot start:
// one error, naming the service once and saying why, and no log line
// repeating it.
func TestServiceErrors(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, transportURL string) (error, *logs) {
		t.Helper()
		l := &logs{}
		err := RunOrders(context.Background(), ServiceConfig{TransportURL: transportURL,
			DatabaseURL: "sqlite:" + filepath.Join(t.TempDir(), "orders.db"), HTTPAddr: "127.0.0.1:0", Logger: l.logger()})
		require.Error(t, err)
		assert.Equal(t, 1, strings.Count(err.Error(), "orders"), "the service is named once: %v", err)
		assert.Empty(t, l.records(t, ""), "the error is reported once, by the returned error")
		return err, l
	}

	t.Run("missing configuration", func(t *testing.T) {
		t.Parallel()
		err := RunOrders(context.Background(), ServiceConfig{})
		assert.EqualError(t, err, "orders: TRANSPORT_URL and DATABASE_URL are required")
	})

	t.Run("broker unreachable", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close()) // nothing listens there now
		err, _ = run(t, "amqp://guest:guest@"+addr+"/")
		assert.ErrorIs(t, err, amqp.ErrNotConnected)
		assert.True(t, strings.HasPrefix(err.Error(), "orders: transports: open amqp://guest:xxxxx@"+addr+"/: amqp: not connected: "), err.Error())
		assert.Contains(t, err.Error(), "connection refused")
	})

	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		tr, err := transports.Open(context.Background(), testenv.AMQPURL())
		if err != nil {
			testenv.Unavailable(t, "RabbitMQ", err)
		}
		require.NoError(t, tr.Close())
		u, err := url.Parse(testenv.AMQPURL())
		require.NoError(t, err)
		user := "guest"
		if u.User != nil && u.User.Username() != "" {
			user = u.User.Username()
		}
		u.User = url.UserPassword(user, "not-the-password")
		err, _ = run(t, u.String())
		assert.ErrorIs(t, err, amqp.ErrAccessRefused)
		assert.False(t, errors.Is(err, amqp.ErrNotConnected), "a refused login is not an unreachable broker: %v", err)
		assert.Contains(t, err.Error(), `access refused for user "`+user+`": check the user and password in the URL`)
		assert.Contains(t, err.Error(), "3 s delay", "the broker's delay is explained")
		assert.NotContains(t, err.Error(), "not-the-password")
	})
}

// TestRestartKeepsStock: a restarted inventory keeps the levels that
// reservations left; STOCK stocks only SKUs not stocked yet. (Found by
// cmd/eventkit-nemesis: every restart used to set the levels back to
// STOCK, undoing the reservations' decrements.)
func TestRestartKeepsStock(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	require.NoError(t, s.orders.Place(ctx, OrderCreated{OrderID: "keep-1", CustomerEmail: "a@b.c", TotalCents: 100,
		Items: []OrderItem{{SKU: "SKU-1", Quantity: 3}}}))
	require.Eventually(t, func() bool {
		n, err := s.inventory.Available(ctx, "SKU-1")
		return err == nil && n == 7
	}, 30*time.Second, 20*time.Millisecond, "the reservation did not take 3 of 10")
	// Setup again, as a restarted process does, with the same STOCK and a
	// new SKU: the old level stays, the new SKU is stocked.
	again := &Inventory{Node: s.inventory.Node}
	require.ErrorContains(t, again.Setup(ctx, map[string]int{"SKU-1": 10, "SKU-9": 4}), "already used", "the handler is added once per node")
	n, err := again.Available(ctx, "SKU-1")
	require.NoError(t, err)
	assert.Equal(t, 7, n, "the restart kept the level")
	n, err = again.Available(ctx, "SKU-9")
	require.NoError(t, err)
	assert.Equal(t, 4, n)
}

// TestConcurrentSetupOnPostgres: services starting at the same time on
// one PostgreSQL database all set up, where concurrent CREATE TABLE IF
// NOT EXISTS used to fail one of them with a unique violation on pg_type.
// (Found by cmd/eventkit-nemesis: its two orders processes start together.)
func TestConcurrentSetupOnPostgres(t *testing.T) {
	t.Parallel()
	db, err := dburl.Open(testenv.PostgresURL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Ping(); err != nil {
		testenv.Unavailable(t, "PostgreSQL", err)
	}
	ctx := context.Background()
	tr, err := transports.Open(ctx, "mem://")
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	reg, err := NewRegistry()
	require.NoError(t, err)
	for round := range 3 {
		// A namespace of its own (its tables are <ns>_orders…), swept by
		// testenv.Main, which removes the tables containing it.
		ns := Namespace(fmt.Sprintf("cs%x", rand.Uint64()&0xffffffffff))
		testenv.Track(string(ns))
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for range 6 {
			wg.Go(func() {
				n, err := NewNode(ctx, NodeConfig{Name: "orders", Namespace: ns, DB: db, Transport: tr, Registry: reg})
				if err == nil {
					err = (&Orders{Node: n}).Setup(ctx)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err, "round %d", round)
		}
	}
}

// PUT /stock/{sku} sets a SKU's level, stocking it if need be: an order
// for it then goes through. Bad bodies are refused in JSON and change
// nothing.
func TestSetStock(t *testing.T) {
	t.Parallel()
	s := setup(t)
	code, _, body := call(t, http.MethodGet, s.url+"/stock/SKU-404", "", nil)
	require.Equal(t, http.StatusNotFound, code, body)

	code, _, body = call(t, http.MethodPut, s.url+"/stock/SKU-404", `{"available":5}`, nil)
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, map[string]any{"sku": "SKU-404", "available": 5.0}, body)
	code, _, body = call(t, http.MethodPut, s.url+"/stock/SKU-1", `{"available":3}`, nil)
	require.Equal(t, http.StatusOK, code, body)
	_, _, body = call(t, http.MethodGet, s.url+"/stock/SKU-1", "", nil)
	assert.EqualValues(t, 3, body["available"], "an existing level is set, not added to")

	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		err                      string
	}{
		{"negative", "PUT", "/stock/SKU-404", `{"available":-1}`, 400, `bad stock: want {"available": N} with N ≥ 0`},
		{"missing", "PUT", "/stock/SKU-404", `{}`, 400, `bad stock: want {"available": N}`},
		{"not a number", "PUT", "/stock/SKU-404", `{"available":"7"}`, 400, "bad stock: json: cannot unmarshal string"},
		{"unknown field", "PUT", "/stock/SKU-404", `{"available":1,"sku":"x"}`, 400, `bad stock: json: unknown field "sku"`},
		{"not JSON", "PUT", "/stock/SKU-404", `nope`, 400, "bad stock: invalid character"},
		{"too large", "PUT", "/stock/SKU-404", `{"available":` + strings.Repeat("1", 2<<20) + `}`, 413, "larger than 1048576 bytes"},
		{"long SKU", "PUT", "/stock/" + strings.Repeat("S", 65), `{"available":1}`, 400, "longer than 64 bytes"},
		{"wrong method", "POST", "/stock/SKU-404", `{"available":1}`, 405, "POST /stock/SKU-404 is not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, header, body := call(t, tc.method, s.url+tc.path, tc.body, nil)
			assert.Equal(t, tc.code, code, body)
			require.Len(t, body, 1, `want {"error": "…"}`)
			assert.Contains(t, body["error"], tc.err)
			if code == http.StatusMethodNotAllowed {
				assert.Equal(t, "GET, HEAD, PUT", header.Get("Allow"))
			}
		})
	}
	_, _, body = call(t, http.MethodGet, s.url+"/stock/SKU-404", "", nil)
	assert.EqualValues(t, 5, body["available"], "the refused requests changed nothing")

	code, _, placed := call(t, http.MethodPost, s.url+"/orders",
		`{"customer_email":"ada@example.com","total_cents":100,"items":[{"sku":"SKU-404","quantity":2}]}`, nil)
	require.Equal(t, http.StatusCreated, code, placed)
	require.Eventually(t, func() bool {
		_, _, o := call(t, http.MethodGet, s.url+"/orders/"+placed["order_id"].(string), "", nil)
		return o["status"] == "paid"
	}, 30*time.Second, 10*time.Millisecond)
	_, _, body = call(t, http.MethodGet, s.url+"/stock/SKU-404", "", nil)
	assert.EqualValues(t, 3, body["available"])
}

// RELAY=off: the service serves and takes orders but leaves its outbox to
// a replica that runs the relay; its /healthz has no relay check. Two
// replicas share one transport and one database pool of the caller's,
// which neither closes.
func TestRelayOff(t *testing.T) {
	t.Parallel()
	err := RunOrders(context.Background(), ServiceConfig{TransportURL: "mem://", DatabaseURL: "sqlite::memory:", Relay: "maybe"})
	assert.EqualError(t, err, `orders: RELAY "maybe": want on or off`)

	ctx := context.Background()
	db, err := dburl.Open("sqlite:" + filepath.Join(t.TempDir(), "orders.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	tr, err := transports.Open(ctx, "mem://")
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	l := &logs{}
	start := func(relay RelayMode) (string, func()) {
		ctx, cancel := context.WithCancel(ctx)
		ready, done := make(chan string, 1), make(chan error, 1)
		go func() {
			done <- RunOrders(ctx, ServiceConfig{Transport: tr, DB: db, HTTPAddr: "127.0.0.1:0", Relay: relay,
				Logger: l.logger(), Ready: func(addr string) { ready <- addr }})
		}()
		select {
		case addr := <-ready:
			return "http://" + addr, func() { cancel(); require.NoError(t, <-done) }
		case err := <-done:
			t.Fatalf("orders did not start: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("orders did not start")
		}
		return "", nil
	}
	api, stopAPI := start(RelayOff)
	defer stopAPI()
	code, _, rep := call(t, http.MethodGet, api+"/healthz", "", nil)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, map[string]any{"status": "ok", "checks": map[string]any{"processor": "ok"}}, rep)

	code, _, placed := call(t, http.MethodPost, api+"/orders",
		`{"customer_email":"ada@example.com","total_cents":100,"items":[{"sku":"SKU-1","quantity":1}]}`, nil)
	require.Equal(t, http.StatusCreated, code, placed)
	pending := func(n int) string {
		return fmt.Sprintf("\neventkit_outbox_pending{outbox=\"orders_outbox\",service=\"orders\"} %d\n", n)
	}
	time.Sleep(500 * time.Millisecond) // a relay would have published it by now
	assert.Contains(t, scrape(t, api), pending(1), "nobody relays")
	assert.Contains(t, scrape(t, api), "\neventkit_outbox_relay_active{outbox=\"orders_outbox\",service=\"orders\"} 0\n")

	relay, stopRelay := start(RelayOn)
	code, _, rep = call(t, http.MethodGet, relay+"/healthz", "", nil)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, map[string]any{"status": "ok", "checks": map[string]any{"processor": "ok", "relay": "ok"}}, rep)
	require.Eventually(t, func() bool { return strings.Contains(scrape(t, api), pending(0)) },
		30*time.Second, 20*time.Millisecond, "the relay replica relays what the API replica wrote")
	assert.Contains(t, scrape(t, api), "\neventkit_outbox_relay_active{outbox=\"orders_outbox\",service=\"orders\"} 1\n")
	stopRelay()
	require.NoError(t, db.PingContext(ctx), "the service did not close the caller's pool")
	exists, err := tr.Exists(ctx, OrderCreatedName, "x")
	require.NoError(t, err, "the service did not close the caller's transport")
	assert.True(t, exists)
}

// scrape returns the text of a service's /metrics.
func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
