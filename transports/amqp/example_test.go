package amqp_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/transports/amqp"
)

func ExampleParseURL() {
	cfg, err := amqp.ParseURL("amqp://guest:guest@rabbit:5672/?prefetch=10&unroutable=drop&confirm_timeout=5s")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.URL, cfg.Prefetch, cfg.Unroutable, cfg.ConfirmTimeout)
	// Output: amqp://guest:guest@rabbit:5672/ 10 drop 5s
}

// A typed configuration; this example needs a broker, so it is not run.
func ExampleNew() {
	ctx := context.Background()
	t, err := amqp.New(ctx, amqp.Config{
		URL:            "amqp://guest:guest@localhost:5672/",
		ConfirmTimeout: 10 * time.Second,
		Logger:         slog.Default(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer t.Close()

	// Declare the consumer group's queue before publishing: a fanout
	// exchange without queues would return the messages (ErrUnroutable).
	sub, err := t.Subscriber("inventory")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sub.Close()
	if err := sub.(message.SubscribeInitializer).SubscribeInitialize("orders.order_created"); err != nil {
		fmt.Println(err)
		return
	}

	// One call, pipelined: all published, then all confirms awaited.
	batch := []*message.Message{
		message.NewMessage("0190b7a2-0000-7000-8000-000000000001", []byte(`{"order_id":"1"}`)),
		message.NewMessage("0190b7a2-0000-7000-8000-000000000002", []byte(`{"order_id":"2"}`)),
	}
	if err := t.Publisher().Publish("orders.order_created", batch...); err != nil {
		fmt.Println(err)
	}
}
