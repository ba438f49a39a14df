package events_test

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/b2131a45/eventkit/events"
)

func TestRegistrationsListsEveryRegistration(t *testing.T) {
	t.Parallel()
	reg := events.NewRegistry()
	require.Empty(t, reg.Registrations())
	noop := func(b []byte) ([]byte, error) { return b, nil }
	events.MustRegister[OrderCreated](reg, "orders.order_created", events.Version(4),
		events.Upcast(3, noop), events.Upcast(1, noop))
	events.MustRegister[StockReserved](reg, "inventory.stock_reserved")
	events.MustRegister[wrapperspb.StringValue](reg, "test.string", events.WithCodec(events.Protobuf))

	got := reg.Registrations()
	assert.Equal(t, []events.Registration{
		{Name: "inventory.stock_reserved", Version: 1, Type: reflect.TypeFor[StockReserved](), ContentType: "application/json", Upcasters: []int{}},
		{Name: "orders.order_created", Version: 4, Type: reflect.TypeFor[OrderCreated](), ContentType: "application/json", Upcasters: []int{1, 3}},
		{Name: "test.string", Version: 1, Type: reflect.TypeFor[wrapperspb.StringValue](), ContentType: "application/protobuf", Upcasters: []int{}},
	}, got)

	// The result is a copy: changing it changes nothing in the registry.
	got[1].Upcasters[0] = 99
	assert.Equal(t, []int{1, 3}, reg.Registrations()[1].Upcasters)
}
