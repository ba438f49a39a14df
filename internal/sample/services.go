package sample

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/middleware"
)

// ErrUnknownSKU is the inventory's permanent error for a product it does not
// sell: retrying cannot help, so the event goes to the dead-letter queue.
var ErrUnknownSKU = errors.New("unknown SKU")

// ErrNotFound is wrapped by the error of Orders.Status for an order that
// does not exist and of Inventory.Available for a SKU that is not stocked.
var ErrNotFound = errors.New("not found")

// Hook, if set on a service, is called for every event the service handled,
// inside the handler's transaction, with the handled event's envelope.
type Hook func(service string, env events.Envelope)

func (h Hook) call(ctx context.Context, service string) {
	if h == nil {
		return
	}
	if env, ok := events.EnvelopeFromContext(ctx); ok {
		h(service, env)
	}
}

// Orders places orders (writing the order and OrderCreated in one
// transaction) and marks them paid on PaymentProcessed.
type Orders struct {
	*Node
	Hook Hook
}

// Setup creates the orders table.
func (o *Orders) Setup(ctx context.Context) error {
	err := o.createTables(ctx, `CREATE TABLE IF NOT EXISTS `+o.table()+` (
		id VARCHAR(64) PRIMARY KEY, customer_email VARCHAR(255) NOT NULL,
		total_cents BIGINT NOT NULL, status VARCHAR(16) NOT NULL)`)
	if err != nil {
		return fmt.Errorf("orders schema: %w", err)
	}
	return o.add(handler(o.Node, MarkPaidHandler, o.markPaid))
}

func (o *Orders) table() string { return o.Namespace.Table("orders") }

// Place writes the order and its OrderCreated event in one transaction
// (seed: CreateOrderCommandHandler with IIntegrationEventOutbox) and logs
// the order at INFO once committed. ctx may carry a correlation id
// (events.WithCorrelationID).
func (o *Orders) Place(ctx context.Context, e OrderCreated) error {
	tx, err := o.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, o.Q(`INSERT INTO `+o.table()+` (id, customer_email, total_cents, status) VALUES (?, ?, ?, 'created')`),
		e.OrderID, e.CustomerEmail, e.TotalCents); err != nil {
		return fmt.Errorf("insert order: %w", err)
	}
	if err := o.Outbox.Add(ctx, tx, e); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	o.Logger.InfoContext(ctx, "order created", slog.String("service", o.Name), slog.String("order_id", e.OrderID),
		slog.String("correlation_id", events.CorrelationIDFromContext(ctx)),
		slog.Int("items", len(e.Items)), slog.Int64("total_cents", e.TotalCents))
	return nil
}

// Status returns an order's status. The error wraps ErrNotFound for an
// unknown order.
func (o *Orders) Status(ctx context.Context, id string) (string, error) {
	var s string
	err := o.DB.QueryRowContext(ctx, o.Q(`SELECT status FROM `+o.table()+` WHERE id = ?`), id).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("order %q: %w", id, ErrNotFound)
	}
	return s, err
}

func (o *Orders) markPaid(ctx context.Context, e *PaymentProcessed) error {
	o.Hook.call(ctx, "orders")
	_, err := o.Exec(ctx, `UPDATE `+o.table()+` SET status = 'paid' WHERE id = ?`, e.OrderID)
	return err
}

// Inventory reserves stock for new orders and publishes StockReserved.
type Inventory struct {
	*Node
	Hook Hook
}

// Setup creates the stock tables and stocks the given SKUs that are not
// stocked yet: a restart keeps the levels that reservations left.
func (i *Inventory) Setup(ctx context.Context, levels map[string]int) error {
	stock, reservations := i.tables()
	if err := i.createTables(ctx,
		`CREATE TABLE IF NOT EXISTS `+stock+` (sku VARCHAR(64) PRIMARY KEY, available INT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS `+reservations+` (order_id VARCHAR(64) NOT NULL, sku VARCHAR(64) NOT NULL, quantity INT NOT NULL, PRIMARY KEY (order_id, sku))`,
	); err != nil {
		return fmt.Errorf("inventory schema: %w", err)
	}
	upsert := `INSERT INTO ` + stock + ` (sku, available) VALUES (?, ?) ON CONFLICT (sku) DO NOTHING`
	if i.Dialect == forwarder.MySQL {
		upsert = `INSERT IGNORE INTO ` + stock + ` (sku, available) VALUES (?, ?)`
	}
	for sku, n := range levels {
		if _, err := i.DB.ExecContext(ctx, i.Q(upsert), sku, n); err != nil {
			return fmt.Errorf("inventory stock %s: %w", sku, err)
		}
	}
	return i.add(handler(i.Node, ReserveStockHandler, i.reserve))
}

func (i *Inventory) tables() (stock, reservations string) {
	return i.Namespace.Table("stock"), i.Namespace.Table("reservations")
}

// Available returns the stock of a SKU. The error wraps ErrNotFound for a
// SKU that is not stocked.
func (i *Inventory) Available(ctx context.Context, sku string) (int, error) {
	stock, _ := i.tables()
	var n int
	err := i.DB.QueryRowContext(ctx, i.Q(`SELECT available FROM `+stock+` WHERE sku = ?`), sku).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("SKU %q: %w", sku, ErrNotFound)
	}
	return n, err
}

// maxSKU is the longest SKU the stock table takes.
const maxSKU = 64

// SetAvailable sets the stock of a SKU to n, stocking it if it was not: the
// fix for orders dead-lettered because nobody sold their SKU, before they
// are replayed. It does not touch reservations.
func (i *Inventory) SetAvailable(ctx context.Context, sku string, n int) error {
	if sku == "" || len(sku) > maxSKU || n < 0 {
		return fmt.Errorf("inventory: SetAvailable(%q, %d): want a SKU of 1 to %d bytes and n ≥ 0", sku, n, maxSKU)
	}
	stock, _ := i.tables()
	upsert := `INSERT INTO ` + stock + ` (sku, available) VALUES (?, ?) ON CONFLICT (sku) DO UPDATE SET available = excluded.available`
	if i.Dialect == forwarder.MySQL {
		upsert = `INSERT INTO ` + stock + ` (sku, available) VALUES (?, ?) ON DUPLICATE KEY UPDATE available = VALUES(available)`
	}
	_, err := i.DB.ExecContext(ctx, i.Q(upsert), sku, n)
	return err
}

func (i *Inventory) reserve(ctx context.Context, e *OrderCreated) error {
	i.Hook.call(ctx, "inventory")
	stock, reservations := i.tables()
	for _, it := range e.Items {
		res, err := i.Exec(ctx, `UPDATE `+stock+` SET available = available - ? WHERE sku = ? AND available >= ?`, it.Quantity, it.SKU, it.Quantity)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return middleware.Permanent(fmt.Errorf("%w %q (or not enough stock) in order %s", ErrUnknownSKU, it.SKU, e.OrderID))
		}
		if _, err := i.Exec(ctx, `INSERT INTO `+reservations+` (order_id, sku, quantity) VALUES (?, ?, ?)`, e.OrderID, it.SKU, it.Quantity); err != nil {
			return err
		}
	}
	return i.Publish(ctx, StockReserved{OrderID: e.OrderID, TotalCents: e.TotalCents})
}

// Payments charges orders whose stock is reserved and publishes
// PaymentProcessed.
type Payments struct {
	*Node
	Hook Hook
}

// Setup creates the payments table.
func (p *Payments) Setup(ctx context.Context) error {
	err := p.createTables(ctx, `CREATE TABLE IF NOT EXISTS `+p.table()+` (
		id VARCHAR(64) PRIMARY KEY, order_id VARCHAR(64) NOT NULL UNIQUE,
		amount_cents BIGINT NOT NULL, status VARCHAR(16) NOT NULL)`)
	if err != nil {
		return fmt.Errorf("payments schema: %w", err)
	}
	return p.add(handler(p.Node, ChargeHandler, p.charge))
}

func (p *Payments) table() string { return p.Namespace.Table("payments") }

func (p *Payments) charge(ctx context.Context, e *StockReserved) error {
	p.Hook.call(ctx, "payments")
	id, err := events.NewID()
	if err != nil {
		return err
	}
	if _, err := p.Exec(ctx, `INSERT INTO `+p.table()+` (id, order_id, amount_cents, status) VALUES (?, ?, ?, 'approved')`, id, e.OrderID, e.TotalCents); err != nil {
		return err
	}
	return p.Publish(ctx, PaymentProcessed{PaymentID: id, OrderID: e.OrderID, AmountCents: e.TotalCents, Status: "approved"})
}
