package contracts_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/contracts"
	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

// Check a change against the recorded contracts.
func ExampleCheck() {
	type OrderPlaced struct {
		OrderID string `json:"order_id"`
		Total   int64  `json:"total"`
	}
	before := events.NewRegistry()
	events.MustRegister[OrderPlaced](before, "orders.order_placed")
	recorded, err := contracts.Take(before)
	if err != nil {
		fmt.Println(err)
		return
	}

	after := events.NewRegistry()
	{
		type OrderPlaced struct {
			OrderID string `json:"order_id"`
			Total   string `json:"total"` // was an integer
		}
		events.MustRegister[OrderPlaced](after, "orders.order_placed")
	}
	current, err := contracts.Take(after)
	if err != nil {
		fmt.Println(err)
		return
	}
	rep, err := contracts.Check(current, recorded, contracts.Backward)
	if err != nil {
		fmt.Println(err) // bad input: exit code 2
		return
	}
	for _, b := range rep.Breaks {
		fmt.Println(b.Event, b.Version, b.Field, b.Kind)
	}
	fmt.Println("exit code", contracts.ExitCode(rep.Err()))
	// Output:
	// orders.order_placed 1 total type_changed
	// exit code 1
}

// Write the AsyncAPI document of one service.
func ExampleExport() {
	type OrderPlaced struct {
		OrderID string `json:"order_id"`
	}
	reg := events.NewRegistry()
	events.MustRegister[OrderPlaced](reg, "orders.order_placed")
	snap, err := contracts.Take(reg, contracts.Service{Name: "orders",
		Publishes: []contracts.Publish{{Event: "orders.order_placed"}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := contracts.Export(os.Stdout, snap, contracts.ExportConfig{Service: "orders", Format: contracts.FormatYAML}); err != nil {
		fmt.Println(err)
	}
}

// Validate payloads at run time, on publish and on consume.
func ExampleValidator() {
	type Payment struct {
		PaymentID string `json:"payment_id"`
		Status    string `json:"status" jsonschema:"enum=paid,enum=failed"`
	}
	reg := events.NewRegistry()
	events.MustRegister[Payment](reg, "payments.payment_made")
	tr, err := transports.Open(context.Background(), "mem://")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tr.Close()
	inbox, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer router.Close()

	// docs:begin validate
	v, err := contracts.NewValidator(reg, contracts.ValidatorConfig{}) // Snapshot: older versions' schemas
	if err != nil {
		fmt.Println(err)
		return
	}
	// On publish: cqrs.BusConfig.Validate, or forwarder.OutboxConfig.Validate.
	bus, err := cqrs.NewBus(tr.Publisher(), cqrs.BusConfig{Registry: reg, Validate: v.ValidateMessage})
	if err != nil {
		fmt.Println(err)
		return
	}
	// On consume: below PoisonQueue, which dead-letters with reason "schema".
	chain, err := middleware.Default(middleware.DefaultConfig{Publisher: tr.Publisher(), Subscribers: tr.Subscriber, Inbox: inbox})
	if err != nil {
		fmt.Println(err)
		return
	}
	router.AddMiddleware(chain.Middlewares()...)
	router.AddMiddleware(v.Middleware)
	// docs:end validate

	err = bus.Publish(context.Background(), Payment{PaymentID: "p-1", Status: "lost"})
	var se *contracts.SchemaError
	fmt.Println(errors.As(err, &se), middleware.ReasonOf(err))
	fmt.Println(se.Violations)
	// Output:
	// true schema
	// [at /status: value must be one of 'paid', 'failed']
}
