package kafka_test

import (
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/transports/kafka"
)

func ExampleParseURL() {
	cfg, err := kafka.ParseURL("kafka://k1:9092,k2:9092?version=3.6.0&partitions=12")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Brokers, cfg.Version, cfg.Partitions)
	// Output: [k1:9092 k2:9092] 3.6.0 12
}

// A typed configuration; this example needs a cluster, so it is not run.
func ExampleNew() {
	t, err := kafka.New(kafka.Config{
		Brokers: []string{"localhost:9092"},
		Logger:  slog.Default(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer t.Close()

	// The partition key is the Kafka message key: events of one order stay
	// in one partition, in order.
	msg := message.NewMessage("0190b7a2-0000-7000-8000-000000000001", []byte(`{"order_id":"42"}`))
	msg.Metadata.Set(events.KeyPartitionKey, "order-42")
	if err := t.Publisher().Publish("orders.order_created", msg); err != nil {
		fmt.Println(err)
	}
}
