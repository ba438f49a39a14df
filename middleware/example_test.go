package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports/memory"
)

// Example wires the Default chain in front of a typed handler: a failed
// attempt is retried, and a duplicate delivery of the same event is dropped
// by the inbox.
func Example() {
	type OrderPlaced struct{ OrderID string }
	reg := events.NewRegistry()
	events.MustRegister[OrderPlaced](reg, "orders.order_placed")

	transport, err := memory.New(memory.Config{})
	if err != nil {
		panic(err)
	}
	defer transport.Close()
	inbox, err := middleware.NewMemoryInbox(middleware.InboxConfig{}) // NewPostgresInbox in production
	if err != nil {
		panic(err)
	}
	chain, err := middleware.Default(middleware.DefaultConfig{
		Publisher: transport.Publisher(), // dead letters go to <topic>.dlq
		Inbox:     inbox,
		Retry:     middleware.RetryConfig{InitialInterval: time.Millisecond},
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}

	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		panic(err)
	}
	router.AddMiddleware(chain.Middlewares()...)
	proc, err := cqrs.NewProcessor(router, transport.Subscriber, cqrs.ProcessorConfig{DeadLetter: transport.Publisher(), Registry: reg})
	if err != nil {
		panic(err)
	}
	handled := make(chan string, 1)
	err = proc.AddHandlers(cqrs.NewHandler("inventory.reserve-stock", func(ctx context.Context, e *OrderPlaced) error {
		attempt := middleware.AttemptFromContext(ctx)
		if attempt == 1 {
			return errors.New("stock service busy")
		}
		handled <- fmt.Sprintf("reserved stock for %s on attempt %d", e.OrderID, attempt)
		return nil
	}))
	if err != nil {
		panic(err)
	}
	go func() { _ = router.Run(context.Background()) }()
	<-router.Running()
	defer router.Close()

	bus, err := cqrs.NewBus(transport.Publisher(), cqrs.BusConfig{Registry: reg})
	if err != nil {
		panic(err)
	}
	msgs, topics, err := bus.Messages(context.Background(), OrderPlaced{OrderID: "o-1"})
	if err != nil {
		panic(err)
	}
	// The same event delivered twice, as a broker may do.
	if err := transport.Publisher().Publish(topics[0], msgs[0], msgs[0].Copy()); err != nil {
		panic(err)
	}
	fmt.Println(<-handled)
	for chain.Duplicates() == 0 {
		time.Sleep(time.Millisecond)
	}
	fmt.Println("duplicates dropped:", chain.Duplicates())
	// Output:
	// reserved stock for o-1 on attempt 2
	// duplicates dropped: 1
}
