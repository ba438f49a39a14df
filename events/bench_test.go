package events_test

import (
	"context"
	"testing"

	"github.com/b2131a45/eventkit/events"
)

// benchRegistry registers the test events, OrderCreated at version 2 with
// its v1 upcaster.
func benchRegistry(b *testing.B) *events.Registry {
	b.Helper()
	reg := events.NewRegistry()
	if err := events.Register[OrderCreated](reg, "orders.order_created", events.Version(2), events.Upcast(1, upcastV1)); err != nil {
		b.Fatal(err)
	}
	if err := events.Register[StockReserved](reg, "inventory.stock_reserved"); err != nil {
		b.Fatal(err)
	}
	return reg
}

// BenchmarkNewMessage measures envelope stamping: encoding an event and
// setting every envelope key (a new UUIDv7 id included) from a context
// with a correlation id.
func BenchmarkNewMessage(b *testing.B) {
	reg := benchRegistry(b)
	ctx := events.WithCorrelationID(context.Background(), "corr-1")
	evt := OrderCreated{OrderID: "o-1", TotalCents: 1250}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.NewMessage(ctx, evt, "orders"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode measures decoding a message: the envelope from its
// metadata, the registry lookup by name and the JSON payload; "upcast" adds
// the v1 → v2 upcaster.
func BenchmarkDecode(b *testing.B) {
	reg := benchRegistry(b)
	msg, err := reg.NewMessage(context.Background(), OrderCreated{OrderID: "o-1", TotalCents: 1250}, "orders")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("current", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := reg.Decode(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("upcast", func(b *testing.B) {
		old := msg.Copy()
		old.Metadata.Set(events.KeyVersion, "1")
		old.Payload = []byte(`{"order_id":"o-1","total":12.5}`)
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := reg.Decode(old); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRegistryLookup measures the lookups of the hot paths: a Go value
// to its name (publishing), a name to its version and a new value
// (decoding).
func BenchmarkRegistryLookup(b *testing.B) {
	reg := benchRegistry(b)
	b.Run("Name", func(b *testing.B) {
		evt := OrderCreated{OrderID: "o-1"}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := reg.Name(evt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Version", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := reg.Version("orders.order_created"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("New", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := reg.New("orders.order_created"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
