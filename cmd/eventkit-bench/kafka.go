package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/b2131a45/eventkit/cmd/eventkit-bench/internal/brokers"
)

func (b *bench) kafkaDrain(ctx context.Context) error {
	topic := "bench.kafka"
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topic))
	if err != nil {
		return err
	}
	defer cluster.Close()
	addrs := cluster.ListenAddrs()

	client, err := sarama.NewClient(addrs, sarama.NewConfig())
	if err != nil {
		return err
	}
	defer client.Close()
	var base int
	from := map[int32]int64{}
	total := func(offsets map[int32]int64) (int, error) {
		sum := 0
		for p := range int32(4) {
			off, err := client.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				return 0, err
			}
			if offsets != nil {
				offsets[p] = off
			}
			sum += int(off)
		}
		return sum, nil
	}
	bt := &brokerTopic{
		name: topic,
		reset: func() error {
			var err error
			base, err = total(from)
			return err
		},
		count: func() (int, error) {
			t, err := total(nil)
			return t - base, err
		},
		consume: func(t *tally) error { return consumeKafka(client, topic, from, t) },
	}

	drainers := []drainer{
		b.eventkitDrainer("eventkit relay (batched, acks=all)", b.eventkitKafka(addrs)),
		b.stockDrainer("stock forwarder + watermill-kafka", func() (message.Publisher, error) {
			return wmkafka.NewPublisher(wmkafka.PublisherConfig{Brokers: addrs, Marshaler: wmkafka.DefaultMarshaler{}}, watermill.NopLogger{})
		}),
	}
	results := map[string][]float64{}
	n := b.o.events
	fmt.Printf("\n== PostgreSQL outbox → Kafka (kfake, in process), %d events, %d runs, eventkit publisher: %s ==\n", n, b.o.runs, b.o.publisher)
	for run := 0; run < b.o.runs; run++ {
		for _, d := range drainers {
			eps, _, dups, err := b.drainOnce(ctx, d, bt, n)
			if err != nil {
				return err
			}
			results[d.label] = append(results[d.label], eps)
			fmt.Printf("  run %d  %-42s %8.0f events/s  consumer: 0 missing, %d duplicates\n", run+1, d.label, eps, dups)
		}
	}
	ek, stock := median(results[drainers[0].label]), median(results[drainers[1].label])
	fmt.Printf("  medians: eventkit %.0f events/s, stock %.0f events/s\n", ek, stock)
	fmt.Printf("  eventkit / stock forwarder: %s (target ≥ 2×) %s\n", ratio(ek, stock), pass(ek >= 2*stock))
	b.record(result{Group: "drain", Label: "drain → Kafka (kfake)", Eventkit: ek, Stock: stock, Unit: "events/s", HigherBetter: true,
		Target: "≥ 2×", Met: ek >= 2*stock})
	return nil
}

func (b *bench) eventkitKafka(addrs []string) func() (message.Publisher, error) {
	if b.useTransports() {
		return b.transport("kafka://" + strings.Join(addrs, ","))
	}
	return func() (message.Publisher, error) { return brokers.NewKafka(addrs) }
}
