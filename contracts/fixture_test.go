package contracts_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/contracts"
	"github.com/b2131a45/eventkit/events"
)

// The sample services' contract (internal/sample), copied, so that
// these tests keep their own fixture when the sample evolves.

type OrderItem struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

type OrderCreated struct {
	OrderID       string      `json:"order_id"`
	CustomerEmail string      `json:"customer_email"`
	TotalCents    int64       `json:"total_cents"`
	Items         []OrderItem `json:"items"`
}

type StockReserved struct {
	OrderID    string `json:"order_id"`
	TotalCents int64  `json:"total_cents"`
}

type PaymentProcessed struct {
	PaymentID   string `json:"payment_id"`
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	Status      string `json:"status"`
}

func sampleRegistry(t testing.TB) *events.Registry {
	t.Helper()
	reg := events.NewRegistry()
	require.NoError(t, events.Register[OrderCreated](reg, "orders.order_created", events.Version(2),
		events.Upcast(1, func(old []byte) ([]byte, error) {
			var v1 struct {
				OrderID       string      `json:"order_id"`
				CustomerEmail string      `json:"customer_email"`
				TotalAmount   float64     `json:"total_amount"`
				Items         []OrderItem `json:"items"`
			}
			if err := json.Unmarshal(old, &v1); err != nil {
				return nil, err
			}
			return json.Marshal(OrderCreated{OrderID: v1.OrderID, CustomerEmail: v1.CustomerEmail,
				TotalCents: int64(v1.TotalAmount*100 + 0.5), Items: v1.Items})
		})))
	require.NoError(t, events.Register[StockReserved](reg, "inventory.stock_reserved"))
	require.NoError(t, events.Register[PaymentProcessed](reg, "payments.payment_processed"))
	return reg
}

// sampleServices is the wiring of the three sample services.
var sampleServices = []contracts.Service{
	{Name: "orders",
		Publishes: []contracts.Publish{{Event: "orders.order_created"}},
		Consumes:  []contracts.Consume{{Event: "payments.payment_processed", Handler: "orders.mark-paid"}}},
	{Name: "inventory",
		Publishes: []contracts.Publish{{Event: "inventory.stock_reserved"}},
		Consumes:  []contracts.Consume{{Event: "orders.order_created", Handler: "inventory.reserve-stock"}}},
	{Name: "payments",
		Publishes: []contracts.Publish{{Event: "payments.payment_processed"}},
		Consumes:  []contracts.Consume{{Event: "inventory.stock_reserved", Handler: "payments.charge"}}},
}

func sampleSnapshot(t testing.TB) *contracts.Snapshot {
	t.Helper()
	snap, err := contracts.Take(sampleRegistry(t), sampleServices...)
	require.NoError(t, err)
	return snap
}
