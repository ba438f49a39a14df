package memory_test

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/transports/memory"
)

// Two consumer groups each receive every event, including those published
// before they subscribed.
func ExampleNew() {
	t, err := memory.New(memory.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer t.Close()

	for _, id := range []string{"e1", "e2"} {
		if err := t.Publisher().Publish("orders", message.NewMessage(id, nil)); err != nil {
			fmt.Println(err)
			return
		}
	}
	for _, group := range []string{"billing", "shipping"} {
		sub, err := t.Subscriber(group)
		if err != nil {
			fmt.Println(err)
			return
		}
		msgs, err := sub.Subscribe(context.Background(), "orders")
		if err != nil {
			fmt.Println(err)
			return
		}
		for range 2 {
			msg := <-msgs
			fmt.Println(group, msg.UUID)
			msg.Ack()
		}
		_ = sub.Close()
	}
	// Output:
	// billing e1
	// billing e2
	// shipping e1
	// shipping e2
}
