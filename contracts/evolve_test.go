package contracts_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/contracts"
	"github.com/b2131a45/eventkit/contracts/contracttest"
	"github.com/b2131a45/eventkit/events"
)

// The steps of docs/contracts.md: each function is the registration of
// orders.order_placed in one commit of the orders service. The page shows
// the regions between "docs:begin" and "docs:end" verbatim, and the output
// of each check (evolutions, below) as TestDocsShowFiles runs it.

// docs:begin v1
// OrderPlaced v1, as the snapshot recorded it.
func orderPlacedV1(reg *events.Registry) {
	type OrderPlaced struct {
		OrderID       string `json:"order_id"`
		CustomerEmail string `json:"customer_email"`
		TotalCents    int64  `json:"total_cents"`
		ShipTo        string `json:"ship_to"`
	}
	events.MustRegister[OrderPlaced](reg, "orders.order_placed")
}

// docs:end v1

// docs:begin add-field
// A new field, optional: v1 events written before lack it, and consumers
// not yet upgraded ignore it.
func orderPlacedWithCurrency(reg *events.Registry) {
	type OrderPlaced struct {
		OrderID       string `json:"order_id"`
		CustomerEmail string `json:"customer_email"`
		TotalCents    int64  `json:"total_cents"`
		ShipTo        string `json:"ship_to"`
		Currency      string `json:"currency,omitempty"` // "" means EUR, as before
	}
	events.MustRegister[OrderPlaced](reg, "orders.order_placed")
}

// docs:end add-field

// docs:begin add-field-unsafe
// The same field without omitempty: the schema makes it required.
func orderPlacedWithRequiredCurrency(reg *events.Registry) {
	type OrderPlaced struct {
		OrderID       string `json:"order_id"`
		CustomerEmail string `json:"customer_email"`
		TotalCents    int64  `json:"total_cents"`
		ShipTo        string `json:"ship_to"`
		Currency      string `json:"currency"`
	}
	events.MustRegister[OrderPlaced](reg, "orders.order_placed")
}

// docs:end add-field-unsafe

// docs:begin rename
// customer_email becomes email: version 2, with an upcaster that moves the
// field, so that consumers on v2 still read the v1 events.
func orderPlacedV2(reg *events.Registry) {
	type OrderPlaced struct {
		OrderID    string `json:"order_id"`
		Email      string `json:"email"`
		TotalCents int64  `json:"total_cents"`
		ShipTo     string `json:"ship_to"`
	}
	events.MustRegister[OrderPlaced](reg, "orders.order_placed", events.Version(2),
		events.Upcast(1, renameField("customer_email", "email")))
}

// renameField returns an upcaster that moves a top-level JSON field.
func renameField(from, to string) events.UpcastFunc {
	return func(old []byte) ([]byte, error) {
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(old, &doc); err != nil {
			return nil, err
		}
		if v, ok := doc[from]; ok {
			doc[to] = v
			delete(doc, from)
		}
		return json.Marshal(doc)
	}
}

// docs:end rename

// docs:begin rename-unsafe
// The same rename in place, still version 1.
func orderPlacedRenamedInPlace(reg *events.Registry) {
	type OrderPlaced struct {
		OrderID    string `json:"order_id"`
		Email      string `json:"email"`
		TotalCents int64  `json:"total_cents"`
		ShipTo     string `json:"ship_to"`
	}
	events.MustRegister[OrderPlaced](reg, "orders.order_placed")
}

// docs:end rename-unsafe

// docs:begin split-1
// Split, step 1: the shipping part gets an event of its own, published
// beside OrderPlaced, which keeps ship_to until nobody reads it there.
func orderPlacedAndShippingRequested(reg *events.Registry) {
	orderPlacedV2(reg)
	type ShippingRequested struct {
		OrderID string `json:"order_id"`
		ShipTo  string `json:"ship_to"`
	}
	events.MustRegister[ShippingRequested](reg, "orders.shipping_requested")
}

// docs:end split-1

// docs:begin split-2
// Split, step 2, once every consumer of ship_to reads ShippingRequested:
// OrderPlaced drops it.
func orderPlacedWithoutShipTo(reg *events.Registry) {
	type OrderPlaced struct {
		OrderID    string `json:"order_id"`
		Email      string `json:"email"`
		TotalCents int64  `json:"total_cents"`
	}
	events.MustRegister[OrderPlaced](reg, "orders.order_placed", events.Version(2),
		events.Upcast(1, renameField("customer_email", "email")))
	type ShippingRequested struct {
		OrderID string `json:"order_id"`
		ShipTo  string `json:"ship_to"`
	}
	events.MustRegister[ShippingRequested](reg, "orders.shipping_requested")
}

// docs:end split-2

// docs:begin split-unsafe
// Splitting by reusing the name: orders.order_placed now names the
// shipping part.
func orderPlacedReused(reg *events.Registry) {
	type ShippingRequested struct {
		OrderID string `json:"order_id"`
		ShipTo  string `json:"ship_to"`
	}
	events.MustRegister[ShippingRequested](reg, "orders.order_placed", events.Version(2), events.Upcast(1, renameField("x", "x")))
}

// docs:end split-unsafe

// evolution is one check the page shows the output of: the contracts
// recorded (history, oldest first) against the commit now, under mode.
type evolution struct {
	history []step
	now     step
	mode    contracts.Mode
	ok      bool
}

var evolutions = map[string]evolution{
	"add-field":        {[]step{orderPlacedV1}, orderPlacedWithCurrency, contracts.Full, true},
	"add-field-unsafe": {[]step{orderPlacedV1}, orderPlacedWithRequiredCurrency, contracts.Full, false},
	"rename":           {[]step{orderPlacedV1}, orderPlacedV2, contracts.Backward, true},
	"rename-full":      {[]step{orderPlacedV1}, orderPlacedV2, contracts.Full, false},
	"rename-unsafe":    {[]step{orderPlacedV1}, orderPlacedRenamedInPlace, contracts.Backward, false},
	"split-1":          {[]step{orderPlacedV1, orderPlacedV2}, orderPlacedAndShippingRequested, contracts.Full, true},
	"split-2":          {[]step{orderPlacedV1, orderPlacedV2, orderPlacedAndShippingRequested}, orderPlacedWithoutShipTo, contracts.Backward, true},
	"split-2-forward":  {[]step{orderPlacedV1, orderPlacedV2, orderPlacedAndShippingRequested}, orderPlacedWithoutShipTo, contracts.Forward, false},
	"split-unsafe":     {[]step{orderPlacedV1}, orderPlacedReused, contracts.Backward, false},
}

// evolutionOutput is what `eventkit contracts check` prints for e.
func evolutionOutput(t *testing.T, e evolution) string {
	t.Helper()
	rep, err := contracts.Check(take(t, e.now), recorded(t, e.history...), e.mode)
	require.NoError(t, err)
	require.Equal(t, e.ok, rep.OK(), rep.String())
	return rep.String()
}

func TestEvolutions(t *testing.T) {
	t.Parallel()
	for name, e := range evolutions {
		out := evolutionOutput(t, e)
		assert.True(t, strings.HasPrefix(out, "contracts: "), name)
	}
}

// docs:begin test
func TestContracts(t *testing.T) {
	reg := events.NewRegistry()
	orderPlacedV1(reg)
	contracttest.Check(t, reg, "testdata/contracts.json", contracts.Backward,
		contracts.Service{Name: "orders", Publishes: []contracts.Publish{{Event: "orders.order_placed"}}})
}

// docs:end test
