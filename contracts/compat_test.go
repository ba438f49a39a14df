package contracts_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/b2131a45/eventkit/contracts"
	"github.com/b2131a45/eventkit/events"
)

// step registers one state of the contract. Each step declares its own
// local types: two steps' "Order" types have the same name, as one type has
// in two commits.
type step func(reg *events.Registry)

// recorded is the snapshot that a contracttest with
// EVENTKIT_UPDATE_CONTRACTS=1 would have written after each step in turn.
func recorded(t *testing.T, steps ...step) *contracts.Snapshot {
	t.Helper()
	var snap *contracts.Snapshot
	for _, s := range steps {
		snap = contracts.Update(snap, take(t, s))
	}
	return snap
}

func take(t *testing.T, s step) *contracts.Snapshot {
	t.Helper()
	reg := events.NewRegistry()
	s(reg)
	snap, err := contracts.Take(reg)
	require.NoError(t, err)
	return snap
}

// want is a break expected: its kind and field.
type want struct {
	kind  contracts.Kind
	field string
}

func (w want) String() string { return fmt.Sprintf("%s %q", w.kind, w.field) }

type compatCase struct {
	name    string
	history []step // recorded, oldest first
	now     step
	// Breaks expected in each direction, for the non-transitive modes and,
	// when set, the transitive ones.
	backward, forward   []want
	backwardT, forwardT []want
	transitiveDiffers   bool
}

func noop(b []byte) ([]byte, error) { return b, nil }

const ev = "orders.order_placed"

func compatCases() []compatCase {
	base := func(reg *events.Registry) {
		type Order struct {
			OrderID string `json:"order_id"`
			Email   string `json:"customer_email"`
			Total   int64  `json:"total"`
		}
		events.MustRegister[Order](reg, ev)
	}
	return []compatCase{
		{name: "add an optional field", history: []step{base}, now: func(reg *events.Registry) {
			type Order struct {
				OrderID  string `json:"order_id"`
				Email    string `json:"customer_email"`
				Total    int64  `json:"total"`
				Currency string `json:"currency,omitempty"`
			}
			events.MustRegister[Order](reg, ev)
		}},
		{name: "add a required field", history: []step{base}, now: func(reg *events.Registry) {
			type Order struct {
				OrderID  string `json:"order_id"`
				Email    string `json:"customer_email"`
				Total    int64  `json:"total"`
				Currency string `json:"currency"`
			}
			events.MustRegister[Order](reg, ev)
		}, backward: []want{{contracts.KindRequiredFieldAdded, "currency"}}},
		{name: "remove an optional field", history: []step{func(reg *events.Registry) {
			type Order struct {
				OrderID string `json:"order_id"`
				Note    string `json:"note,omitempty"`
			}
			events.MustRegister[Order](reg, ev)
		}}, now: func(reg *events.Registry) {
			type Order struct {
				OrderID string `json:"order_id"`
			}
			events.MustRegister[Order](reg, ev)
		}},
		{name: "remove a required field", history: []step{base}, now: func(reg *events.Registry) {
			type Order struct {
				OrderID string `json:"order_id"`
				Total   int64  `json:"total"`
			}
			events.MustRegister[Order](reg, ev)
		}, forward: []want{{contracts.KindFieldRemoved, "customer_email"}}},
		{name: "rename a field", history: []step{base}, now: func(reg *events.Registry) {
			type Order struct {
				OrderID string `json:"order_id"`
				Email   string `json:"email"`
				Total   int64  `json:"total"`
			}
			events.MustRegister[Order](reg, ev)
		}, backward: []want{{contracts.KindFieldRenamed, "email"}}, forward: []want{{contracts.KindFieldRenamed, "email"}}},
		{name: "change a field's type", history: []step{base}, now: func(reg *events.Registry) {
			type Order struct {
				OrderID string `json:"order_id"`
				Email   string `json:"customer_email"`
				Total   string `json:"total"`
			}
			events.MustRegister[Order](reg, ev)
		}, backward: []want{{contracts.KindTypeChanged, "total"}}, forward: []want{{contracts.KindTypeChanged, "total"}}},
		{name: "widen integer to number", history: []step{base}, now: func(reg *events.Registry) {
			type Order struct {
				OrderID string  `json:"order_id"`
				Email   string  `json:"customer_email"`
				Total   float64 `json:"total"`
			}
			events.MustRegister[Order](reg, ev)
		}, forward: []want{{contracts.KindTypeChanged, "total"}}},
		{name: "an optional field becomes required", history: []step{func(reg *events.Registry) {
			type Order struct {
				OrderID string `json:"order_id"`
				Note    string `json:"note,omitempty"`
			}
			events.MustRegister[Order](reg, ev)
		}}, now: func(reg *events.Registry) {
			type Order struct {
				OrderID string `json:"order_id"`
				Note    string `json:"note"`
			}
			events.MustRegister[Order](reg, ev)
		}, backward: []want{{contracts.KindBecameRequired, "note"}}},
		{name: "a required field becomes optional", history: []step{base}, now: func(reg *events.Registry) {
			type Order struct {
				OrderID string `json:"order_id"`
				Email   string `json:"customer_email,omitempty"`
				Total   int64  `json:"total"`
			}
			events.MustRegister[Order](reg, ev)
		}, forward: []want{{contracts.KindBecameOptional, "customer_email"}}},
		{name: "remove an enum value", history: []step{paymentStatus("paid", "failed", "pending")}, now: paymentStatus("paid", "failed"),
			backward: []want{{contracts.KindEnumValueRemoved, "status"}}},
		{name: "add an enum value", history: []step{paymentStatus("paid", "failed")}, now: paymentStatus("paid", "failed", "refunded"),
			forward: []want{{contracts.KindEnumValueAdded, "status"}}},
		{name: "restrict a string to an enum", history: []step{paymentStatus()}, now: paymentStatus("paid", "failed"),
			backward: []want{{contracts.KindEnumAdded, "status"}}},
		{name: "lift an enum", history: []step{paymentStatus("paid", "failed")}, now: paymentStatus(),
			forward: []want{{contracts.KindEnumRemoved, "status"}}},
		{name: "change a nested field's type", history: []step{orderItems(false, false)}, now: orderItems(true, false),
			backward: []want{{contracts.KindTypeChanged, "items[].quantity"}}, forward: []want{{contracts.KindTypeChanged, "items[].quantity"}}},
		{name: "add a required nested field", history: []step{orderItems(false, false)}, now: orderItems(false, true),
			backward: []want{{contracts.KindRequiredFieldAdded, "items[].warehouse"}}},
		{name: "a string gets a date-time format", history: []step{func(reg *events.Registry) {
			type Order struct {
				OrderID  string `json:"order_id"`
				PlacedAt string `json:"placed_at"`
			}
			events.MustRegister[Order](reg, ev)
		}}, now: func(reg *events.Registry) {
			type Order struct {
				OrderID  string    `json:"order_id"`
				PlacedAt time.Time `json:"placed_at"`
			}
			events.MustRegister[Order](reg, ev)
		}, backward: []want{{contracts.KindFormatChanged, "placed_at"}}},
		{name: "reorder fields and document them", history: []step{base}, now: func(reg *events.Registry) {
			type Order struct {
				Total   int64  `json:"total" jsonschema_description:"in cents"`
				OrderID string `json:"order_id" jsonschema:"title=Order id"`
				Email   string `json:"customer_email"`
			}
			events.MustRegister[Order](reg, ev)
		}},
		{name: "change a map's value type", history: []step{func(reg *events.Registry) {
			type Order struct {
				Tags map[string]string `json:"tags"`
			}
			events.MustRegister[Order](reg, ev)
		}}, now: func(reg *events.Registry) {
			type Order struct {
				Tags map[string]int `json:"tags"`
			}
			events.MustRegister[Order](reg, ev)
		}, backward: []want{{contracts.KindTypeChanged, "tags.*"}}, forward: []want{{contracts.KindTypeChanged, "tags.*"}}},
		{name: "tighten a bound", history: []step{noteMax(100)}, now: noteMax(50),
			backward: []want{{contracts.KindConstraintChanged, "note"}}},
		{name: "loosen a bound", history: []step{noteMax(50)}, now: noteMax(100),
			forward: []want{{contracts.KindConstraintChanged, "note"}}},
		{name: "reuse the name for another type", history: []step{base}, now: func(reg *events.Registry) {
			type Refund struct {
				OrderID string `json:"order_id"`
				Email   string `json:"customer_email"`
				Total   int64  `json:"total"`
			}
			events.MustRegister[Refund](reg, ev)
		}, backward: []want{{contracts.KindNameReused, ""}}, forward: []want{{contracts.KindNameReused, ""}}},
		{name: "change the codec", history: []step{base}, now: func(reg *events.Registry) {
			type Order struct {
				OrderID string `json:"order_id"`
				Email   string `json:"customer_email"`
				Total   int64  `json:"total"`
			}
			events.MustRegister[Order](reg, ev, events.WithCodec(otherCodec{}))
		}, backward: []want{{contracts.KindContentTypeChanged, ""}}, forward: []want{{contracts.KindContentTypeChanged, ""}}},
		{name: "bump the version with an upcaster", history: []step{base}, now: func(reg *events.Registry) {
			type Order struct {
				OrderID    string `json:"order_id"`
				Email      string `json:"customer_email"`
				TotalCents int64  `json:"total_cents"`
			}
			events.MustRegister[Order](reg, ev, events.Version(2), events.Upcast(1, noop))
		}, forward: []want{{contracts.KindVersionBumped, ""}}},
		{name: "bump the version with no upcaster", history: []step{base}, now: func(reg *events.Registry) {
			type Order struct {
				OrderID    string `json:"order_id"`
				TotalCents int64  `json:"total_cents"`
			}
			events.MustRegister[Order](reg, ev, events.Version(2))
		}, backward: []want{{contracts.KindNoUpcaster, ""}}, forward: []want{{contracts.KindVersionBumped, ""}}},
		{name: "skip a version's upcaster", history: []step{base}, now: func(reg *events.Registry) {
			type Order struct {
				OrderID string `json:"order_id"`
			}
			events.MustRegister[Order](reg, ev, events.Version(3), events.Upcast(2, noop))
		}, backward: []want{{contracts.KindNoUpcaster, ""}}, forward: []want{{contracts.KindVersionBumped, ""}}},
		{name: "drop an upcaster", history: []step{versioned(2, 1)}, now: versioned(2),
			backward: []want{{contracts.KindUpcasterRemoved, ""}}},
		{name: "lower the version", history: []step{versioned(2, 1)}, now: base,
			backward: []want{{contracts.KindVersionLowered, ""}}, forward: []want{{contracts.KindVersionLowered, ""}}},
		{name: "change a protobuf field's type", history: []step{func(reg *events.Registry) {
			events.MustRegister[wrapperspb.StringValue](reg, ev, events.WithCodec(events.Protobuf))
		}}, now: func(reg *events.Registry) {
			events.MustRegister[wrapperspb.Int64Value](reg, ev, events.WithCodec(events.Protobuf))
		}, backward: []want{{contracts.KindNameReused, ""}, {contracts.KindTypeChanged, "value (#1)"}},
			forward: []want{{contracts.KindNameReused, ""}, {contracts.KindTypeChanged, "value (#1)"}}},
		{name: "bring a removed field back with another type (transitive)",
			history: []step{noteOf[string](false), func(reg *events.Registry) {
				type Order struct {
					OrderID string `json:"order_id"`
				}
				events.MustRegister[Order](reg, ev)
			}},
			now:               noteOf[int](true),
			transitiveDiffers: true,
			backwardT:         []want{{contracts.KindTypeChanged, "note"}},
			forwardT:          []want{{contracts.KindTypeChanged, "note"}, {contracts.KindBecameOptional, "note"}}},
		{name: "drop support of a version recorded before the last (transitive)",
			history:           []step{base, versioned(2)},
			now:               versioned(3, 2),
			forward:           []want{{contracts.KindVersionBumped, ""}},
			transitiveDiffers: true,
			backwardT:         []want{{contracts.KindNoUpcaster, ""}},
			forwardT:          []want{{contracts.KindVersionBumped, ""}}},
	}
}

func paymentStatus(values ...string) step {
	return func(reg *events.Registry) {
		type Payment struct {
			PaymentID string `json:"payment_id"`
			Status    string `json:"status"`
		}
		var opts []events.Option
		if len(values) == 0 {
			events.MustRegister[Payment](reg, ev, opts...)
			return
		}
		// An enum through JSONSchemaExtend would need a method; a tagged
		// type per value set is what a real event does.
		switch strings.Join(values, ",") {
		case "paid,failed":
			type Payment struct {
				PaymentID string `json:"payment_id"`
				Status    string `json:"status" jsonschema:"enum=paid,enum=failed"`
			}
			events.MustRegister[Payment](reg, ev)
		case "paid,failed,pending":
			type Payment struct {
				PaymentID string `json:"payment_id"`
				Status    string `json:"status" jsonschema:"enum=paid,enum=failed,enum=pending"`
			}
			events.MustRegister[Payment](reg, ev)
		case "paid,failed,refunded":
			type Payment struct {
				PaymentID string `json:"payment_id"`
				Status    string `json:"status" jsonschema:"enum=paid,enum=failed,enum=refunded"`
			}
			events.MustRegister[Payment](reg, ev)
		default:
			panic("no type for " + strings.Join(values, ","))
		}
	}
}

func orderItems(quantityString, warehouse bool) step {
	return func(reg *events.Registry) {
		switch {
		case quantityString:
			type Item struct {
				SKU      string `json:"sku"`
				Quantity string `json:"quantity"`
			}
			type Order struct {
				OrderID string `json:"order_id"`
				Items   []Item `json:"items"`
			}
			events.MustRegister[Order](reg, ev)
		case warehouse:
			type Item struct {
				SKU       string `json:"sku"`
				Quantity  int    `json:"quantity"`
				Warehouse string `json:"warehouse"`
			}
			type Order struct {
				OrderID string `json:"order_id"`
				Items   []Item `json:"items"`
			}
			events.MustRegister[Order](reg, ev)
		default:
			type Item struct {
				SKU      string `json:"sku"`
				Quantity int    `json:"quantity"`
			}
			type Order struct {
				OrderID string `json:"order_id"`
				Items   []Item `json:"items"`
			}
			events.MustRegister[Order](reg, ev)
		}
	}
}

func noteMax(n int) step {
	return func(reg *events.Registry) {
		switch n {
		case 50:
			type Order struct {
				Note string `json:"note" jsonschema:"maxLength=50"`
			}
			events.MustRegister[Order](reg, ev)
		default:
			type Order struct {
				Note string `json:"note" jsonschema:"maxLength=100"`
			}
			events.MustRegister[Order](reg, ev)
		}
	}
}

// noteOf is an Order with a note of type T, required or optional.
func noteOf[T any](optional bool) step {
	return func(reg *events.Registry) {
		if optional {
			type Order struct {
				OrderID string `json:"order_id"`
				Note    T      `json:"note,omitempty"`
			}
			events.MustRegister[Order](reg, ev)
			return
		}
		type Order struct {
			OrderID string `json:"order_id"`
			Note    T      `json:"note"`
		}
		events.MustRegister[Order](reg, ev)
	}
}

// versioned is an Order at version v with upcasters from the versions given.
func versioned(v int, upcastFrom ...int) step {
	return func(reg *events.Registry) {
		type Order struct {
			OrderID string `json:"order_id"`
			Email   string `json:"customer_email"`
			Total   int64  `json:"total"`
		}
		opts := []events.Option{events.Version(v)}
		for _, f := range upcastFrom {
			opts = append(opts, events.Upcast(f, noop))
		}
		events.MustRegister[Order](reg, ev, opts...)
	}
}

// otherCodec is JSON under another media type.
type otherCodec struct{}

func (otherCodec) ContentType() string                { return "application/vnd.eventkit-test+json" }
func (otherCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (otherCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// TestCompatibilityTable: each schema change, under each of the six modes,
// fails with exactly the breaks expected — each naming the event, the
// version and the field — or passes when safe.
func TestCompatibilityTable(t *testing.T) {
	t.Parallel()
	cases := compatCases()
	require.Greater(t, len(cases), 20)
	unsafe := map[contracts.Mode]int{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			against := recorded(t, c.history...)
			current := take(t, c.now)
			for _, mode := range contracts.Modes {
				rep, err := contracts.Check(current, against, mode)
				require.NoError(t, err, mode)
				bw, fw := c.backward, c.forward
				if mode.Transitive() && c.transitiveDiffers {
					bw, fw = c.backwardT, c.forwardT
				}
				expected := map[string]bool{}
				if mode.Backward() {
					for _, w := range bw {
						expected[w.String()] = true
					}
				}
				if mode.Forward() {
					for _, w := range fw {
						expected[w.String()] = true
					}
				}
				got := map[string]bool{}
				for _, b := range rep.Breaks {
					got[want{b.Kind, b.Field}.String()] = true
					line := b.String()
					assert.Contains(t, line, ev+" v", "%s: the break names the event and version: %s", mode, line)
					if b.Field != "" {
						assert.Contains(t, line, fmt.Sprintf("field %q", b.Field), "%s: %s", mode, line)
					}
					assert.Contains(t, line, "breaks ", "%s: the break says whom it breaks: %s", mode, line)
				}
				assert.Equal(t, sortedKeys(expected), sortedKeys(got), "%s:\n%s", mode, rep)
				assert.Equal(t, len(expected) == 0, rep.OK(), mode)
				assert.Equal(t, len(expected) == 0, rep.Err() == nil, mode)
			}
		})
		for _, mode := range contracts.Modes {
			bw, fw := c.backward, c.forward
			if mode.Transitive() && c.transitiveDiffers {
				bw, fw = c.backwardT, c.forwardT
			}
			if mode.Backward() && len(bw) > 0 || mode.Forward() && len(fw) > 0 {
				unsafe[mode]++
			}
		}
	}
	for _, mode := range contracts.Modes {
		t.Logf("%-19s %2d unsafe, %2d safe of %d changes", mode, unsafe[mode], len(cases)-unsafe[mode], len(cases))
		assert.Positive(t, unsafe[mode], mode)
		assert.Less(t, unsafe[mode], len(cases), mode)
	}
}

func sortedKeys(m map[string]bool) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
