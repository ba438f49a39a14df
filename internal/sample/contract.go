// Package sample is the seed's sample domain shared by the quickstart and the
// three sample services: the integration-event contract (orders, inventory,
// payments) and the wiring every service repeats (outbox, relay, router with
// the Default middleware chain, inbox).
package sample

import (
	"encoding/json"

	"github.com/b2131a45/eventkit/contracts"
	"github.com/b2131a45/eventkit/events"
)

// Event names: the stable wire names, which are also the topics.
const (
	OrderCreatedName     = "orders.order_created"
	StockReservedName    = "inventory.stock_reserved"
	PaymentProcessedName = "payments.payment_processed"
)

// OrderItem is one line of an order.
type OrderItem struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// OrderCreated (v2) is published by orders when an order is placed. Version 1
// carried the total as a float in "total_amount"; v2 carries cents.
type OrderCreated struct {
	OrderID       string      `json:"order_id"`
	CustomerEmail string      `json:"customer_email"`
	TotalCents    int64       `json:"total_cents"`
	Items         []OrderItem `json:"items"`
}

// PartitionKey keeps the events of one order in order on Kafka.
func (e OrderCreated) PartitionKey() string { return e.OrderID }

// StockReserved is published by inventory once an order's stock is reserved.
type StockReserved struct {
	OrderID    string `json:"order_id"`
	TotalCents int64  `json:"total_cents"`
}

// PartitionKey keeps the events of one order in order on Kafka.
func (e StockReserved) PartitionKey() string { return e.OrderID }

// PaymentProcessed is published by payments once an order is charged.
type PaymentProcessed struct {
	PaymentID   string `json:"payment_id"`
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	Status      string `json:"status"`
}

// PartitionKey keeps the events of one order in order on Kafka.
func (e PaymentProcessed) PartitionKey() string { return e.OrderID }

// NewRegistry returns a registry with the sample contract.
func NewRegistry() (*events.Registry, error) {
	reg := events.NewRegistry()
	if err := events.Register[OrderCreated](reg, OrderCreatedName, events.Version(2), events.Upcast(1, orderCreatedV1toV2)); err != nil {
		return nil, err
	}
	if err := events.Register[StockReserved](reg, StockReservedName); err != nil {
		return nil, err
	}
	if err := events.Register[PaymentProcessed](reg, PaymentProcessedName); err != nil {
		return nil, err
	}
	return reg, nil
}

// Handler names: each is its handler's consumer group (in a namespace,
// Namespace.Handler).
const (
	MarkPaidHandler     = "orders.mark-paid"
	ReserveStockHandler = "inventory.reserve-stock"
	ChargeHandler       = "payments.charge"
)

// Services is the wiring of the three sample services in namespace ns,
// for their contracts (package contracts): which service publishes which
// event to which topic, and which handler consumes it. It is what
// NewOrders, NewInventory and NewPayments wire; the tests check that the
// two agree.
func Services(ns Namespace) []contracts.Service {
	publish := func(event string) []contracts.Publish {
		return []contracts.Publish{{Event: event, Topic: ns.Topic(event)}}
	}
	consume := func(event, handler string) []contracts.Consume {
		return []contracts.Consume{{Event: event, Topic: ns.Topic(event), Handler: ns.Handler(handler)}}
	}
	return []contracts.Service{
		{Name: "orders", Publishes: publish(OrderCreatedName), Consumes: consume(PaymentProcessedName, MarkPaidHandler)},
		{Name: "inventory", Publishes: publish(StockReservedName), Consumes: consume(OrderCreatedName, ReserveStockHandler)},
		{Name: "payments", Publishes: publish(PaymentProcessedName), Consumes: consume(StockReservedName, ChargeHandler)},
	}
}

// Contracts returns the contracts of the sample (NewRegistry and
// Services in namespace ns): the snapshot the tests keep in
// testdata/contracts.json and the services serve as AsyncAPI.
func Contracts(ns Namespace) (*contracts.Snapshot, error) {
	reg, err := NewRegistry()
	if err != nil {
		return nil, err
	}
	return contracts.Take(reg, Services(ns)...)
}

func orderCreatedV1toV2(old []byte) ([]byte, error) {
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
}
