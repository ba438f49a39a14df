package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/sample"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// schemaDB returns a connection to a fresh schema of the test PostgreSQL
// (dropped at cleanup; testenv.Main sweeps it after a killed run),
// standing for one service's database.
func schemaDB(t *testing.T, name string) *sql.DB {
	t.Helper()
	admin, err := sql.Open("pgx", testenv.PostgresURL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close() })
	if err := admin.Ping(); err != nil {
		testenv.Unavailable(t, "PostgreSQL", err)
	}
	_, err = admin.Exec(`CREATE SCHEMA "` + name + `"`)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := admin.Exec(`DROP SCHEMA "` + name + `" CASCADE`)
		assert.NoError(t, err, "drop schema %s", name)
	})
	sep := "?"
	if strings.Contains(testenv.PostgresURL(), "?") {
		sep = "&"
	}
	db, err := sql.Open("pgx", testenv.PostgresURL()+sep+"search_path="+name)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func sqlExec(t *testing.T, db *sql.DB, queries ...string) {
	t.Helper()
	for _, q := range queries {
		_, err := db.Exec(q)
		require.NoError(t, err, q)
	}
}

// deadLetter is the dead letter PoisonQueue would park for an event of
// order id, as the checker reads it.
func deadLetter(id, orderID string, reason middleware.Reason, handler, errText string) *message.Message {
	m := message.NewMessage(id, []byte(fmt.Sprintf(`{"order_id":%q}`, orderID)))
	m.Metadata.Set("event_name", sample.OrderCreatedName)
	m.Metadata.Set("event_id", id)
	m.Metadata.Set(middleware.KeyReason, string(reason))
	m.Metadata.Set(middleware.KeyError, errText)
	m.Metadata.Set(middleware.KeyAttempts, "1")
	m.Metadata.Set(middleware.KeyOriginalTopic, sample.OrderCreatedName)
	m.Metadata.Set(middleware.KeyHandler, handler)
	m.Metadata.Set(middleware.KeyFailedAt, time.Now().UTC().Format(time.RFC3339Nano))
	return m
}

// TestCheckerFindsEachViolation feeds the checker databases and a
// dead-letter queue holding one instance of every broken promise beside
// orders that kept theirs: it must report each one, naming the order, and
// nothing else. It shows the checker can fail.
func TestCheckerFindsEachViolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base := testenv.Name(t, "nem")
	dbs := map[string]*sql.DB{}
	reg, err := sample.NewRegistry()
	require.NoError(t, err)
	for _, svc := range []string{"orders", "inventory", "payments"} {
		dbs[svc] = schemaDB(t, base+"_"+svc)
		ob, err := forwarder.NewOutbox(dbs[svc], forwarder.OutboxConfig{Registry: reg, Name: svc + "_outbox"})
		require.NoError(t, err)
		require.NoError(t, ob.Setup(ctx))
		if svc == "orders" { // one row the relay never published
			tx, err := dbs[svc].Begin()
			require.NoError(t, err)
			require.NoError(t, ob.Add(ctx, tx, sample.OrderCreated{OrderID: "stuck", CustomerEmail: "x", Items: []sample.OrderItem{{SKU: sku, Quantity: 1}}}))
			require.NoError(t, tx.Commit())
		}
	}
	sqlExec(t, dbs["orders"], `CREATE TABLE orders (id TEXT PRIMARY KEY, customer_email TEXT, total_cents BIGINT, status TEXT)`,
		`INSERT INTO orders VALUES
			('good', 'order-1-q2@nemesis.test', 200, 'paid'),
			('unreserved', 'order-2-q1@nemesis.test', 100, 'created'),
			('twice', 'order-3-q1@nemesis.test', 100, 'paid'),
			('undercharged', 'order-4-q3@nemesis.test', 300, 'paid'),
			('unpaid', 'order-5-q1@nemesis.test', 100, 'created'),
			('poison-ok', 'poison-6@nemesis.test', 100, 'created'),
			('poison-lost', 'poison-7@nemesis.test', 100, 'created'),
			('poison-effect', 'poison-8@nemesis.test', 100, 'created'),
			('stranger', 'someone@example.com', 100, 'created')`)
	sqlExec(t, dbs["inventory"], `CREATE TABLE reservations (order_id TEXT, sku TEXT, quantity INT)`,
		`CREATE TABLE stock (sku TEXT PRIMARY KEY, available INT)`,
		`INSERT INTO reservations VALUES ('good', 'SKU-1', 2), ('twice', 'SKU-1', 1), ('undercharged', 'SKU-1', 3),
			('unpaid', 'SKU-1', 1), ('poison-effect', 'SKU-404', 1), ('rolled-back', 'SKU-1', 1)`,
		fmt.Sprintf(`INSERT INTO stock VALUES ('SKU-1', %d)`, initialStock-6)) // the committed good orders reserved 7
	sqlExec(t, dbs["payments"], `CREATE TABLE payments (order_id TEXT, amount_cents BIGINT)`,
		`INSERT INTO payments VALUES ('good', 200), ('twice', 100), ('twice', 100), ('undercharged', 250), ('rolled-back', 100)`)

	dlq := map[string][]*message.Message{
		middleware.DeadLetterTopic(sample.OrderCreatedName): {
			deadLetter("e-poison-ok", "poison-ok", middleware.ReasonPermanent, sample.ReserveStockHandler, `unknown SKU "SKU-404" (or not enough stock)`),
			deadLetter("e-poison-effect", "poison-effect", middleware.ReasonPermanent, sample.ReserveStockHandler, `unknown SKU "SKU-404"`),
			deadLetter("e-dup", "good", middleware.ReasonFailed, sample.ReserveStockHandler, `duplicate key value violates unique constraint`),
		},
	}
	browse := func(_ context.Context, topic, _ string, _ int) ([]*message.Message, error) { return dlq[topic], nil }

	res, err := check(ctx, checkInput{dbs: dbs, browse: browse, acked: map[string]bool{"good": false, "lost": false}})
	require.NoError(t, err)
	want := []string{
		"order lost was acknowledged (201, poison=false) but is not committed",
		`order stranger: customer_email "someone@example.com" was not written by the load`,
		"order unreserved has 0 stock reservations, want exactly 1",
		"order unreserved has 0 payments, want exactly 1",
		`order unreserved is "created", want paid`,
		"order twice has 2 payments, want exactly 1",
		"order undercharged was charged 250 cents, want its total 300",
		"order unpaid has 0 payments, want exactly 1",
		`order unpaid is "created", want paid`,
		"poison order poison-lost is not in the dead-letter queue orders.order_created.dlq",
		"poison order poison-effect has effects: 1 reservations, 0 payments",
		"stock reserved for order rolled-back, which is not committed (rolled back)",
		"payment for order rolled-back, which is not committed (rolled back)",
		"unexpected dead letter on orders.order_created.dlq: event e-dup of order good, reason failed",
		fmt.Sprintf("stock of SKU-1 is %d, want %d", initialStock-6, initialStock-7),
		"outbox orders_outbox: 1 pending, 0 failed (parked) after the drain",
	}
	for _, w := range want {
		found := false
		for _, v := range res.Violations {
			found = found || strings.Contains(v, w)
		}
		assert.True(t, found, "missing violation %q in:\n%s", w, strings.Join(res.Violations, "\n"))
	}
	assert.Len(t, res.Violations, len(want), "only these:\n%s", strings.Join(res.Violations, "\n"))
	assert.Equal(t, 9, res.Committed)
	assert.Equal(t, 3, res.CommittedPoison)

	// The same databases, every promise kept: no violation.
	sqlExec(t, dbs["orders"], `DELETE FROM orders WHERE id <> 'good' AND id <> 'poison-ok'`, `DELETE FROM watermill_orders_outbox`)
	sqlExec(t, dbs["inventory"], `DELETE FROM reservations WHERE order_id <> 'good'`, fmt.Sprintf(`UPDATE stock SET available = %d`, initialStock-2))
	sqlExec(t, dbs["payments"], `DELETE FROM payments WHERE order_id <> 'good'`)
	dlq[middleware.DeadLetterTopic(sample.OrderCreatedName)] = dlq[middleware.DeadLetterTopic(sample.OrderCreatedName)][:1]
	res, err = check(ctx, checkInput{dbs: dbs, browse: browse, acked: map[string]bool{"good": false, "poison-ok": true}})
	require.NoError(t, err)
	assert.Empty(t, res.Violations)
	assert.Equal(t, 1, res.DeadLetters, "the poison order's dead letter, counted once")
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	o, err := parseFlags([]string{"-seed", "7,random", "-duration", "10s"})
	require.NoError(t, err)
	require.Len(t, o.seeds, 2)
	assert.Equal(t, uint64(7), o.seeds[0])
	assert.Equal(t, 10*time.Second, o.duration)
	for args, want := range map[string]string{
		"-seed x":          `-seed "x": want numbers or "random"`,
		"-duration 0s":     "-duration 0s: want more than 0",
		"-rate 0":          "-rate 0: want 1 to 1000",
		"-break outbox":    `-break "outbox": want inbox`,
		"-poison-every -1": "-poison-every -1: want 0 or more",
		"extra":            `unexpected argument "extra"`,
	} {
		_, err := parseFlags(strings.Fields(args))
		require.ErrorContains(t, err, want, args)
	}
}
