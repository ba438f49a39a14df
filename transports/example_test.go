package transports_test

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/transports"
)

// The transport is chosen by URL; the code around it stays the same for
// amqp://, kafka://, postgres://, mysql:// and mem://.
func ExampleOpen() {
	ctx := context.Background()
	t, err := transports.Open(ctx, "mem://")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer t.Close()

	err = t.Publisher().Publish("orders.order_created",
		message.NewMessage("0190b7a2-7c1e-7d4e-9a1b-3c6f2d8e9f01", []byte(`{"order_id":"42"}`)))
	if err != nil {
		fmt.Println(err)
		return
	}

	// A durable consumer group: it receives every event of the topic.
	sub, err := t.Subscriber("inventory.reserve-stock")
	if err != nil {
		fmt.Println(err)
		return
	}
	msgs, err := sub.Subscribe(ctx, "orders.order_created")
	if err != nil {
		fmt.Println(err)
		return
	}
	msg := <-msgs
	fmt.Println(msg.UUID, string(msg.Payload))
	msg.Ack()

	fmt.Println(t.Kind(), t.Capabilities().OrderedPerKey)
	// Output:
	// 0190b7a2-7c1e-7d4e-9a1b-3c6f2d8e9f01 {"order_id":"42"}
	// memory true
}

func ExampleOpen_badURL() {
	_, err := transports.Open(context.Background(), "amqp://guest:secret@/?prefetch=lots")
	fmt.Println(err)
	// Output:
	// transports: invalid URL "amqp://guest:xxxxx@/?prefetch=lots": missing host
}
