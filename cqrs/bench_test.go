package cqrs_test

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
)

type discardPublisher struct{}

func (discardPublisher) Publish(string, ...*message.Message) error { return nil }
func (discardPublisher) Close() error                              { return nil }

type benchOrderPlaced struct {
	OrderID string `json:"order_id"`
	Total   int64  `json:"total_cents"`
}

func (e benchOrderPlaced) PartitionKey() string { return e.OrderID }

// BenchmarkBusPublish measures envelope stamping through the Bus: encoding,
// the envelope from a handler-like context (correlation and causation) and
// the Publish call, to a publisher that discards. "batch100" publishes 100
// events per call and reports per event.
func BenchmarkBusPublish(b *testing.B) {
	reg := events.NewRegistry()
	events.MustRegister[benchOrderPlaced](reg, "bench.order_placed")
	bus, err := cqrs.NewBus(discardPublisher{}, cqrs.BusConfig{Registry: reg, Source: "orders"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := events.ContextWithEnvelope(context.Background(), events.Envelope{
		ID: "0190f5d6-6c1e-7a4e-9c39-6d1f3c2b1a00", Name: "bench.cause", CorrelationID: "corr-1", Version: 1,
	})
	evt := benchOrderPlaced{OrderID: "o-1", Total: 1250}
	b.Run("single", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := bus.Publish(ctx, evt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("batch100", func(b *testing.B) {
		evts := make([]any, 100)
		for i := range evts {
			evts[i] = evt
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := bus.Publish(ctx, evts...); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/event")
	})
}
