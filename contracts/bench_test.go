package contracts_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/contracts"
)

// benchOrder is a realistic event: the sample OrderCreated with three
// items, 180 bytes of JSON.
var benchOrder = OrderCreated{OrderID: "0199a3c4-5b6e-7f80-9a1b-2c3d4e5f6a7b", CustomerEmail: "ada@example.com", TotalCents: 45990,
	Items: []OrderItem{{SKU: "SKU-1001", Quantity: 2}, {SKU: "SKU-2002", Quantity: 1}, {SKU: "SKU-3003", Quantity: 5}}}

// BenchmarkValidate is the cost of runtime validation per event: the
// payload parsed and checked against its compiled schema.
func BenchmarkValidate(b *testing.B) {
	v, err := contracts.NewValidator(sampleRegistry(b), contracts.ValidatorConfig{})
	require.NoError(b, err)
	payload, err := json.Marshal(benchOrder)
	require.NoError(b, err)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Validate("orders.order_created", 2, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidateMessage is Validate as the middleware and the publisher
// option call it: the envelope read from the message first.
func BenchmarkValidateMessage(b *testing.B) {
	reg := sampleRegistry(b)
	v, err := contracts.NewValidator(reg, contracts.ValidatorConfig{})
	require.NoError(b, err)
	msg, err := reg.NewMessage(context.Background(), benchOrder, "orders")
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if err := v.ValidateMessage(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeBaseline is what a consumer does anyway for that event:
// Registry.Decode. Validation's cost is best read against it.
func BenchmarkDecodeBaseline(b *testing.B) {
	reg := sampleRegistry(b)
	msg, err := reg.NewMessage(context.Background(), benchOrder, "orders")
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := reg.Decode(msg); err != nil {
			b.Fatal(err)
		}
	}
}
