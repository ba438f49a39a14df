package cqrs_test

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/transports"
)

type CheckoutOrderPlaced struct {
	OrderID string `json:"order_id"`
}

type CheckoutStockHeld struct {
	OrderID string `json:"order_id"`
}

// A typed handler reacts to one event and publishes the next: the new event
// keeps the conversation's correlation id and names the handled event as
// its cause.
func Example() {
	ctx := context.Background()
	reg := events.NewRegistry()
	events.MustRegister[CheckoutOrderPlaced](reg, "orders.order_placed")
	events.MustRegister[CheckoutStockHeld](reg, "inventory.stock_held")

	t, err := transports.Open(ctx, "mem://") // amqp://…, kafka://…, postgres://…
	if err != nil {
		panic(err)
	}
	defer t.Close()
	bus, err := cqrs.NewBus(t.Publisher(), cqrs.BusConfig{Registry: reg, Source: "orders"})
	if err != nil {
		panic(err)
	}
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		panic(err)
	}
	proc, err := cqrs.NewProcessor(router, t.Subscriber, cqrs.ProcessorConfig{Registry: reg, DeadLetter: t.Publisher()})
	if err != nil {
		panic(err)
	}
	done := make(chan string, 1)
	err = proc.AddHandlers(
		cqrs.NewHandler("inventory.reserve-stock", func(ctx context.Context, e *CheckoutOrderPlaced) error {
			return bus.Publish(ctx, CheckoutStockHeld{OrderID: e.OrderID})
		}),
		cqrs.NewHandler("payments.charge", func(ctx context.Context, e *CheckoutStockHeld) error {
			env, _ := events.EnvelopeFromContext(ctx)
			done <- fmt.Sprintf("stock held for %s; correlation %s; caused by another event: %v",
				e.OrderID, env.CorrelationID, env.CausationID != "" && env.CausationID != env.ID)
			return nil
		}),
	)
	if err != nil {
		panic(err)
	}
	go func() { _ = router.Run(ctx) }()
	<-router.Running()
	defer router.Close()

	if err := bus.Publish(events.WithCorrelationID(ctx, "checkout-42"), CheckoutOrderPlaced{OrderID: "o-1"}); err != nil {
		panic(err)
	}
	fmt.Println(<-done)
	// Output:
	// stock held for o-1; correlation checkout-42; caused by another event: true
}
