package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/sample"
	"github.com/b2131a45/eventkit/middleware"
)

// checkInput is what the checker reads: the three databases (straight,
// not through the proxy), the dead-letter queues (read-only, through
// browse: transports.Transport.Browse, straight to the broker), and the
// ids of the orders the load saw acknowledged.
type checkInput struct {
	dbs    map[string]*sql.DB // by service
	browse middleware.Browser
	acked  map[string]bool // order id → poison
}

// checkResult is the checker's verdict and its counts.
type checkResult struct {
	Committed       int      `json:"orders_committed"`
	CommittedPoison int      `json:"poison_orders_committed"`
	Acked           int      `json:"orders_acknowledged"`
	Reservations    int      `json:"stock_reservations"`
	Payments        int      `json:"payments"`
	DeadLetters     int      `json:"dead_letters"`
	DLQDuplicates   int      `json:"dead_letter_duplicates"`
	Pending         int64    `json:"outbox_pending"`
	Failed          int64    `json:"outbox_failed"`
	Violations      []string `json:"violations"`
}

func (r *checkResult) violate(format string, args ...any) {
	r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
}

type order struct {
	id, email, status string
	total             int64
}

// check reads the databases and the dead-letter queues once the system
// drained, and reports every broken promise with the ids involved:
//   - every acknowledged order is committed;
//   - every committed good order has exactly one stock reservation (the
//     quantity it asked for) and exactly one payment (its total), and is
//     marked paid;
//   - no effect (reservation, payment) exists for an order that is not
//     committed (rolled back);
//   - every committed poison order has no effect and is in the dead-letter
//     queue of orders.order_created with reason permanent, from
//     inventory.reserve-stock, and nothing else is dead-lettered;
//   - the stock is the initial stock less what the reservations took;
//   - the outboxes have nothing pending or failed.
func check(ctx context.Context, in checkInput) (*checkResult, error) {
	r := &checkResult{Acked: len(in.acked)}
	orders := map[string]order{}
	rows, err := in.dbs["orders"].QueryContext(ctx, `SELECT id, customer_email, total_cents, status FROM orders`)
	if err != nil {
		return nil, fmt.Errorf("read orders: %w", err)
	}
	for rows.Next() {
		var o order
		if err := rows.Scan(&o.id, &o.email, &o.total, &o.status); err != nil {
			return nil, err
		}
		orders[o.id] = o
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	reservations := map[string][]orderItem{}
	if err := scanAll(ctx, in.dbs["inventory"], `SELECT order_id, sku, quantity FROM reservations`, func(rows *sql.Rows) error {
		var id string
		var it orderItem
		if err := rows.Scan(&id, &it.SKU, &it.Quantity); err != nil {
			return err
		}
		reservations[id] = append(reservations[id], it)
		r.Reservations++
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read reservations: %w", err)
	}
	payments := map[string][]int64{}
	if err := scanAll(ctx, in.dbs["payments"], `SELECT order_id, amount_cents FROM payments`, func(rows *sql.Rows) error {
		var id string
		var amount int64
		if err := rows.Scan(&id, &amount); err != nil {
			return err
		}
		payments[id] = append(payments[id], amount)
		r.Payments++
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read payments: %w", err)
	}
	dead, dups, err := deadLetters(ctx, in.browse)
	if err != nil {
		return nil, err
	}
	r.DLQDuplicates = dups

	for _, id := range sortedKeys(in.acked) {
		poison := in.acked[id]
		if _, ok := orders[id]; !ok {
			r.violate("order %s was acknowledged (201, poison=%v) but is not committed: lost", id, poison)
		}
	}
	reserved := 0
	for _, id := range sortedKeys(orders) {
		o := orders[id]
		r.Committed++
		_, q, poison, ok := parseEmail(o.email)
		if !ok {
			r.violate("order %s: customer_email %q was not written by the load", id, o.email)
			continue
		}
		res, pays := reservations[id], payments[id]
		if poison {
			r.CommittedPoison++
			if len(res) > 0 || len(pays) > 0 {
				r.violate("poison order %s has effects: %d reservations, %d payments", id, len(res), len(pays))
			}
			d, ok := dead["orders.order_created.dlq"][id]
			switch {
			case !ok:
				r.violate("poison order %s is not in the dead-letter queue orders.order_created.dlq", id)
			case d.Reason != middleware.ReasonPermanent || d.Handler != sample.ReserveStockHandler || !strings.Contains(d.Error, "unknown SKU"):
				r.violate("poison order %s is dead-lettered with reason %q by %q (%s), want permanent by %s (unknown SKU)",
					id, d.Reason, d.Handler, d.Error, sample.ReserveStockHandler)
			}
			delete(dead["orders.order_created.dlq"], id)
			continue
		}
		switch {
		case len(res) != 1:
			r.violate("order %s has %d stock reservations, want exactly 1", id, len(res))
		case res[0] != orderItem{SKU: sku, Quantity: q}:
			r.violate("order %s reserved %d of %s, want %d of %s", id, res[0].Quantity, res[0].SKU, q, sku)
		}
		for _, it := range res {
			reserved += it.Quantity
		}
		switch {
		case len(pays) != 1:
			r.violate("order %s has %d payments, want exactly 1", id, len(pays))
		case pays[0] != o.total:
			r.violate("order %s was charged %d cents, want its total %d", id, pays[0], o.total)
		}
		if o.status != "paid" {
			r.violate("order %s is %q, want paid (its PaymentProcessed was not handled)", id, o.status)
		}
	}
	for _, id := range sortedKeys(reservations) {
		if _, ok := orders[id]; !ok {
			r.violate("stock reserved for order %s, which is not committed (rolled back)", id)
		}
	}
	for _, id := range sortedKeys(payments) {
		if _, ok := orders[id]; !ok {
			r.violate("payment for order %s, which is not committed (rolled back)", id)
		}
	}
	for _, topic := range sortedKeys(dead) {
		for _, id := range sortedKeys(dead[topic]) {
			d := dead[topic][id]
			r.violate("unexpected dead letter on %s: event %s of order %s, reason %s by %s: %s", topic, d.EventID, id, d.Reason, d.Handler, d.Error)
		}
	}
	for _, d := range dead {
		r.DeadLetters += len(d)
	}
	r.DeadLetters += r.CommittedPoison

	var available int
	if err := in.dbs["inventory"].QueryRowContext(ctx, `SELECT available FROM stock WHERE sku = $1`, sku).Scan(&available); err != nil {
		return nil, fmt.Errorf("read stock: %w", err)
	}
	if available != initialStock-reserved {
		r.violate("stock of %s is %d, want %d (initial %d less %d reserved)", sku, available, initialStock-reserved, initialStock, reserved)
	}
	for _, svc := range []string{"orders", "inventory", "payments"} {
		st, err := outboxStats(ctx, in.dbs[svc], svc)
		if err != nil {
			return nil, err
		}
		r.Pending += st.Pending
		r.Failed += st.Failed
		if st.Pending > 0 || st.Failed > 0 {
			r.violate("outbox %s_outbox: %d pending, %d failed (parked) after the drain", svc, st.Pending, st.Failed)
		}
	}
	return r, nil
}

// deadLetters reads every dead-letter queue without taking anything, keyed
// by topic and order id, and counts the dead letters of one event id seen
// more than once (at-least-once allows them; they are reported).
func deadLetters(ctx context.Context, browse middleware.Browser) (map[string]map[string]middleware.DeadLetter, int, error) {
	out := map[string]map[string]middleware.DeadLetter{}
	dups := 0
	for _, topic := range []string{sample.OrderCreatedName, sample.StockReservedName, sample.PaymentProcessedName} {
		dlq := middleware.DeadLetterTopic(topic)
		list, res, err := middleware.BrowseDLQ(ctx, browse, middleware.ReplayConfig{Topic: dlq})
		if err != nil {
			return nil, 0, fmt.Errorf("read %s: %w", dlq, err)
		}
		if res.Invalid > 0 {
			return nil, 0, fmt.Errorf("%s holds %d messages that are not dead letters", dlq, res.Invalid)
		}
		byOrder := map[string]middleware.DeadLetter{}
		seen := map[string]bool{}
		for _, d := range list {
			if seen[d.EventID] {
				dups++
				continue
			}
			seen[d.EventID] = true
			var p struct {
				OrderID string `json:"order_id"`
			}
			_ = json.Unmarshal(d.Message.Payload, &p)
			key := p.OrderID
			if key == "" {
				key = "event " + d.EventID
			}
			byOrder[key] = d
		}
		if len(byOrder) > 0 {
			out[dlq] = byOrder
		}
	}
	return out, dups, nil
}

func outboxStats(ctx context.Context, db *sql.DB, svc string) (forwarder.Stats, error) {
	reg, err := sample.NewRegistry()
	if err != nil {
		return forwarder.Stats{}, err
	}
	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Name: svc + "_outbox"})
	if err != nil {
		return forwarder.Stats{}, err
	}
	st, err := ob.Stats(ctx)
	if err != nil {
		return st, fmt.Errorf("outbox %s: %w", svc, err)
	}
	return st, nil
}

func scanAll(ctx context.Context, db *sql.DB, query string, f func(*sql.Rows) error) error {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := f(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// drain waits until the system is quiet: no outbox row pending, every
// queue of the services (not the dead-letter and observer queues) empty
// with nothing unacked, twice in a row 3 s apart; or until timeout. It
// reports how long it took.
func drain(ctx context.Context, w *world, dbs map[string]*sql.DB, vhost string, timeout time.Duration) (time.Duration, error) {
	began := time.Now()
	quiet := 0
	var last string
	for time.Since(began) < timeout {
		busy, err := busyness(ctx, w, dbs, vhost)
		if err != nil {
			busy = err.Error()
		}
		if busy == "" {
			quiet++
			if quiet == 2 {
				return time.Since(began), nil
			}
		} else {
			quiet, last = 0, busy
		}
		sleep(ctx, 3*time.Second)
	}
	return time.Since(began), fmt.Errorf("not drained after %v: %s", timeout, last)
}

// busyness says what is still in flight, "" when nothing.
func busyness(ctx context.Context, w *world, dbs map[string]*sql.DB, vhost string) (string, error) {
	var busy []string
	for _, svc := range []string{"orders", "inventory", "payments"} {
		st, err := outboxStats(ctx, dbs[svc], svc)
		if err != nil {
			return "", err
		}
		if st.Pending > 0 || st.Scheduled > 0 {
			busy = append(busy, fmt.Sprintf("outbox %s: %d pending, %d scheduled", svc, st.Pending, st.Scheduled))
		}
	}
	qs, err := w.rabbit.queues(ctx, vhost)
	if err != nil {
		return "", err
	}
	for _, q := range sortedKeys(qs) {
		if strings.Contains(q, ".dlq_") || strings.HasPrefix(q, "nemesis.observer.") {
			continue
		}
		if c := qs[q]; c[0]+c[1] > 0 {
			busy = append(busy, fmt.Sprintf("queue %s: %d ready, %d unacked", q, c[0], c[1]))
		}
	}
	return strings.Join(busy, "; "), nil
}
