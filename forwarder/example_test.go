package forwarder_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
)

type OrderPlaced struct {
	OrderID string `json:"order_id"`
}

// An order and its integration event commit together; the relay then moves
// the event to the broker (here Watermill's in-memory Pub/Sub).
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "outbox")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "app.db")+"?_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	reg := events.NewRegistry()
	events.MustRegister[OrderPlaced](reg, "orders.order_placed")
	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Source: "orders"})
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.Setup(ctx); err != nil {
		log.Fatal(err)
	}

	// The unit of work: domain writes and the event, in one transaction.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.Add(ctx, tx, OrderPlaced{OrderID: "o-1"}); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}

	broker := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer broker.Close()
	received, err := broker.Subscribe(ctx, "orders.order_placed")
	if err != nil {
		log.Fatal(err)
	}
	relay, err := forwarder.NewRelay(ob, broker, forwarder.RelayConfig{})
	if err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(runCtx) }()

	msg := <-received
	msg.Ack()
	fmt.Println(msg.Metadata.Get(events.KeyName), "from", msg.Metadata.Get(events.KeySource))

	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	st, err := ob.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("published %d, pending %d\n", st.Published, st.Pending)
	// Output:
	// orders.order_placed from orders
	// published 1, pending 0
}

// Scheduled delivery: an event added with DeliverAfter waits in the outbox,
// neither pending nor lag, and the relay publishes it once due; an event
// added after it is not held back.
func Example_scheduled() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "outbox")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "app.db")+"?_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	reg := events.NewRegistry()
	events.MustRegister[OrderPlaced](reg, "orders.order_placed")
	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg})
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.Setup(ctx); err != nil {
		log.Fatal(err)
	}
	add := func(evts ...any) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			log.Fatal(err)
		}
		if err := ob.Add(ctx, tx, evts...); err != nil {
			log.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			log.Fatal(err)
		}
	}
	add(OrderPlaced{OrderID: "reminder"}, forwarder.DeliverAfter(300*time.Millisecond))
	add(OrderPlaced{OrderID: "now"})
	st, err := ob.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pending:", st.Pending, "scheduled:", st.Scheduled)

	broker := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer broker.Close()
	received, err := broker.Subscribe(ctx, "orders.order_placed")
	if err != nil {
		log.Fatal(err)
	}
	relay, err := forwarder.NewRelay(ob, broker, forwarder.RelayConfig{})
	if err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(runCtx) }()
	for range 2 {
		msg := <-received
		msg.Ack()
		var e OrderPlaced
		if _, err := reg.DecodeInto(msg, &e); err != nil {
			log.Fatal(err)
		}
		fmt.Println("published", e.OrderID)
	}
	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	// Output:
	// pending: 1 scheduled: 1
	// published now
	// published reminder
}
