package events_test

import (
	"context"
	"fmt"

	"github.com/b2131a45/eventkit/events"
)

func ExampleRegister() {
	type OrderCreated struct {
		OrderID    string `json:"order_id"`
		TotalCents int64  `json:"total_cents"`
	}
	reg := events.NewRegistry()
	err := events.Register[OrderCreated](reg, "orders.order_created",
		events.Version(2),
		events.Upcast(1, func(old []byte) ([]byte, error) {
			return []byte(`{"order_id":"o-1","total_cents":1250}`), nil // v1 → v2
		}))
	if err != nil {
		panic(err)
	}

	msg, err := reg.NewMessage(events.WithCorrelationID(context.Background(), "req-1"), OrderCreated{OrderID: "o-1"}, "orders")
	if err != nil {
		panic(err)
	}
	msg.Metadata.Set(events.KeyVersion, "1") // pretend an old producer wrote it
	env, payload, err := reg.Decode(msg)
	if err != nil {
		panic(err)
	}
	fmt.Println(env.Name, env.Version, env.CorrelationID, env.Source)
	fmt.Printf("%+v\n", *payload.(*OrderCreated))
	// Output:
	// orders.order_created 1 req-1 orders
	// {OrderID:o-1 TotalCents:1250}
}
