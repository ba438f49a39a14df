package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmcqrs "github.com/ThreeDotsLabs/watermill/components/cqrs"
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

// Example_delayedRetry shows the two stages of recoverability: the handler
// fails its immediate retries, the message is handed to the transport's
// delay and acked (the consumer goes on with the next event), and it comes
// back to the same handler after the first level, with the same event id.
func Example_delayedRetry() {
	type PaymentRequested struct{ OrderID string }
	reg := events.NewRegistry()
	events.MustRegister[PaymentRequested](reg, "payments.payment_requested")

	transport, err := memory.New(memory.Config{})
	if err != nil {
		panic(err)
	}
	defer transport.Close()
	inbox, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
	if err != nil {
		panic(err)
	}
	chain, err := middleware.Default(middleware.DefaultConfig{
		Publisher: transport.Publisher(), // also the Delayer: every eventkit transport's publisher is one
		Inbox:     inbox,
		Retry:     middleware.RetryConfig{MaxAttempts: 2, InitialInterval: time.Millisecond},
		// In production the default levels are 10 s, 20 s and 30 s.
		DelayedRetry: middleware.DelayedRetryConfig{Levels: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond}},
		Logger:       slog.New(slog.DiscardHandler),
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
	done := make(chan string, 2)
	calls := 0
	err = proc.AddHandlers(cqrs.NewHandler("payments.charge", func(ctx context.Context, e *PaymentRequested) error {
		calls++ // one message at a time on the memory transport
		if e.OrderID == "o-1" && calls <= 2 {
			return errors.New("payment provider down")
		}
		env, _ := events.EnvelopeFromContext(ctx)
		done <- fmt.Sprintf("charged %s (event %s) after %d delayed round(s)", e.OrderID, env.ID[:4]+"…", delayedRounds(ctx))
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
	msgs, _, err := bus.Messages(context.Background(), PaymentRequested{OrderID: "o-1"}, PaymentRequested{OrderID: "o-2"})
	if err != nil {
		panic(err)
	}
	if err := transport.Publisher().Publish("payments.payment_requested", msgs...); err != nil {
		panic(err)
	}
	fmt.Println(strings.Replace(<-done, msgs[1].UUID[:4], "ID", 1)) // o-2 does not wait for o-1
	fmt.Println(strings.Replace(<-done, msgs[0].UUID[:4], "ID", 1))
	fmt.Println("delayed:", chain.DelayedRetry.Delayed(), "dead-lettered:", chain.DeadLettered())
	// Output:
	// charged o-2 (event ID…) after 0 delayed round(s)
	// charged o-1 (event ID…) after 1 delayed round(s)
	// delayed: 1 dead-lettered: 0
}

// delayedRounds reads the delayed rounds of the message being handled.
func delayedRounds(ctx context.Context) int {
	n, _ := middleware.DelayedAttemptsOf(wmcqrs.OriginalMessageFromCtx(ctx))
	return n
}
