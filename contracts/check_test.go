package contracts_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/contracts"
	"github.com/b2131a45/eventkit/events"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	return path
}

func writeSnapshot(t *testing.T, name string, s *contracts.Snapshot) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, contracts.WriteSnapshotFile(path, s))
	return path
}

// TestBadSnapshots: a snapshot that is not JSON, of a newer format, not a
// snapshot, or naming an event the registry lacks is a clear error, exit
// code 2, never a panic.
func TestBadSnapshots(t *testing.T) {
	t.Parallel()
	current := writeSnapshot(t, "current.json", sampleSnapshot(t))
	valid, err := sampleSnapshot(t).Marshal()
	require.NoError(t, err)
	unwired, err := contracts.Take(sampleRegistry(t))
	require.NoError(t, err)
	validUnwired, err := unwired.Marshal()
	require.NoError(t, err)
	for _, c := range []struct {
		name, content string
		is            error
		says          string
	}{
		{"not JSON", "{\n  \"format\": 1,\n  \"events\": [}\n", contracts.ErrNotJSON, "not valid JSON: line 3, column 14"},
		{"empty", "", contracts.ErrNotJSON, "not valid JSON"},
		{"truncated", string(valid[:len(valid)/2]), contracts.ErrNotJSON, "not valid JSON"},
		{"not UTF-8", "{\"format\": 1, \"events\": [], \"x\": \"\xff\"}", contracts.ErrNotJSON, "not valid JSON: not valid UTF-8"},
		{"a newer format", `{"format": 2, "events": [], "whatever": {}}`, contracts.ErrNewerFormat, "format 2, this eventkit reads format 1 at most: upgrade eventkit"},
		{"no format", `{"events": []}`, contracts.ErrInvalidSnapshot, `no "format"`},
		{"a format that is not a number", `{"format": "1"}`, contracts.ErrInvalidSnapshot, `"format" is "1"`},
		{"an array", `[]`, contracts.ErrInvalidSnapshot, "not a JSON object"},
		{"an unknown field", `{"format": 1, "events": [], "evnets": []}`, contracts.ErrInvalidSnapshot, `unknown field "evnets"`},
		{"an event without schemas", `{"format": 1, "events": [{"name": "a.b", "type": "x.T", "content_type": "application/json", "version": 1, "upcasters": [], "schemas": []}]}`,
			contracts.ErrInvalidSnapshot, "event a.b: no schemas"},
		{"a schema that is not a schema", `{"format": 1, "events": [{"name": "a.b", "type": "x.T", "content_type": "application/json", "version": 1, "schemas": [{"version": 1, "json_schema": 42}]}]}`,
			contracts.ErrInvalidSnapshot, "json_schema is not a JSON Schema"},
		{"a version 0", `{"format": 1, "events": [{"name": "a.b", "type": "x.T", "content_type": "application/json", "version": 0, "schemas": [{"version": 0, "json_schema": {}}]}]}`,
			contracts.ErrInvalidSnapshot, "version 0, must be ≥ 1"},
		{"an upcaster beyond the version", `{"format": 1, "events": [{"name": "a.b", "type": "x.T", "content_type": "application/json", "version": 1, "upcasters": [1], "schemas": [{"version": 1, "json_schema": {}}]}]}`,
			contracts.ErrInvalidSnapshot, "upcaster from version 1"},
		{"a bad protobuf descriptor", `{"format": 1, "events": [{"name": "a.b", "type": "x.T", "content_type": "application/protobuf", "version": 1, "schemas": [{"version": 1, "protobuf": {"message": "x.T", "descriptor": {"file": [{"name": 3}]}}}]}]}`,
			contracts.ErrInvalidSnapshot, "protobuf descriptor"},
		{"wiring an unknown event", `{"format": 1, "events": [], "services": [{"name": "s", "publishes": [{"event": "a.b"}]}]}`,
			contracts.ErrInvalidSnapshot, `publishes "a.b"`},
		{"an event the registry lacks", strings.Replace(string(validUnwired), `"name": "inventory.stock_reserved"`, `"name": "inventory.stock_released"`, 1),
			contracts.ErrUnknownEvent, `names an event the registry lacks: "inventory.stock_released" (StockReserved): register it, or if it was retired on purpose take it out of the snapshot`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			against := writeFile(t, "against.json", c.content)
			var rep *contracts.Report
			var err error
			require.NotPanics(t, func() { rep, err = contracts.CheckFile(current, against, contracts.Backward) })
			require.Error(t, err)
			assert.Nil(t, rep)
			assert.ErrorIs(t, err, c.is)
			var se *contracts.SnapshotError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, against, se.Path)
			assert.Contains(t, err.Error(), "contracts: snapshot "+against+": ")
			assert.Contains(t, err.Error(), c.says)
			assert.Equal(t, 2, contracts.ExitCode(err))
		})
	}
	t.Run("a missing file", func(t *testing.T) {
		t.Parallel()
		_, err := contracts.CheckFile(current, filepath.Join(t.TempDir(), "nope.json"), contracts.Backward)
		assert.ErrorIs(t, err, fs.ErrNotExist)
		assert.Equal(t, 2, contracts.ExitCode(err))
	})
	t.Run("a bad mode", func(t *testing.T) {
		t.Parallel()
		_, err := contracts.CheckFile(current, current, "sideways")
		assert.ErrorContains(t, err, `unknown compatibility mode "sideways"`)
		assert.Equal(t, 2, contracts.ExitCode(err))
		_, err = contracts.ParseMode("sideways")
		assert.ErrorContains(t, err, "backward, forward, full, each optionally _transitive")
	})
}

// FuzzReadSnapshot: no input makes reading or checking a snapshot panic.
func FuzzReadSnapshot(f *testing.F) {
	valid, err := sampleSnapshot(f).Marshal()
	require.NoError(f, err)
	f.Add(valid)
	f.Add([]byte(`{"format": 1, "events": [{"name": "a.b", "type": "x.T", "content_type": "application/json", "version": 2, "upcasters": [1], "schemas": [{"version": 2, "json_schema": {"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/A"}}}}]}]}`))
	f.Add([]byte(`{"format": 1, "events": [{"name": "a.b", "type": "x.T", "content_type": "application/json", "version": 1, "schemas": [{"version": 1, "json_schema": {"properties": {"x": {"anyOf": [true, {"type": "null"}]}}, "items": [1]}}]}]}`))
	current := sampleSnapshot(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		snap, err := contracts.ReadSnapshot(bytes.NewReader(data))
		if err != nil {
			var se *contracts.SnapshotError
			require.ErrorAs(t, err, &se)
			return
		}
		for _, mode := range contracts.Modes {
			_, _ = contracts.Check(snap, snap, mode)
			_, _ = contracts.Check(current, snap, mode)
			_, _ = contracts.Check(snap, current, mode)
		}
		_, _ = contracts.AsyncAPI(snap, contracts.ExportConfig{})
	})
}

func TestCheckFile(t *testing.T) {
	t.Parallel()
	against := writeSnapshot(t, "against.json", sampleSnapshot(t))
	t.Run("the same contracts pass", func(t *testing.T) {
		t.Parallel()
		rep, err := contracts.CheckFile(against, against, contracts.FullTransitive)
		require.NoError(t, err)
		assert.True(t, rep.OK())
		assert.False(t, rep.Stale)
		assert.Equal(t, 0, contracts.ExitCode(rep.Err()))
		assert.Equal(t, "contracts: compatible (full_transitive)\n", rep.String())
	})
	t.Run("a break is exit code 1 and names whom it breaks", func(t *testing.T) {
		t.Parallel()
		type OrderCreated struct { // customer_email removed
			OrderID    string      `json:"order_id"`
			TotalCents int64       `json:"total_cents"`
			Items      []OrderItem `json:"items"`
		}
		reg := events.NewRegistry()
		events.MustRegister[OrderCreated](reg, "orders.order_created", events.Version(2), events.Upcast(1, noop))
		events.MustRegister[StockReserved](reg, "inventory.stock_reserved")
		events.MustRegister[PaymentProcessed](reg, "payments.payment_processed")
		snap, err := contracts.Take(reg, sampleServices...)
		require.NoError(t, err)
		rep, err := contracts.CheckFile(writeSnapshot(t, "current.json", snap), against, contracts.Forward)
		require.NoError(t, err)
		require.Len(t, rep.Breaks, 1)
		b := rep.Breaks[0]
		assert.Equal(t, contracts.Break{Event: "orders.order_created", Version: 2, Against: 2, Field: "customer_email",
			Kind: contracts.KindFieldRemoved, Breaks: contracts.Forward, Detail: b.Detail,
			Consumers: []string{"inventory/inventory.reserve-stock"}}, b)
		assert.Equal(t, `orders.order_created v2, field "customer_email": removed, but consumers on the previous schema require it — `+
			`breaks forward compatibility: consumers not yet upgraded cannot read events from upgraded producers (consumers: inventory/inventory.reserve-stock)`, b.String())
		err = rep.Err()
		assert.Equal(t, 1, contracts.ExitCode(err))
		var be *contracts.BreakingChangesError
		require.ErrorAs(t, err, &be)
		assert.Contains(t, err.Error(), "1 breaking change(s) under forward compatibility:\n  "+b.String())
		assert.True(t, rep.Stale)
	})
}

func TestWiringChanges(t *testing.T) {
	t.Parallel()
	against := sampleSnapshot(t)
	moved := append([]contracts.Service(nil), sampleServices...)
	moved[0] = contracts.Service{Name: "orders",
		Publishes: []contracts.Publish{{Event: "orders.order_created", Topic: "orders.v2"}},
		Consumes:  sampleServices[0].Consumes}
	current, err := contracts.Take(sampleRegistry(t), moved...)
	require.NoError(t, err)
	rep, err := contracts.Check(current, against, contracts.Backward)
	require.NoError(t, err)
	require.Len(t, rep.Breaks, 1)
	assert.Equal(t, contracts.KindTopicChanged, rep.Breaks[0].Kind)
	assert.Contains(t, rep.Breaks[0].String(), "service orders publishes it to orders.v2, no longer to orders.order_created: "+
		"consumers subscribed to orders.order_created stop receiving it")
	assert.Equal(t, []string{"inventory/inventory.reserve-stock"}, rep.Breaks[0].Consumers)

	// A new consumer, a new event: safe.
	added := append(append([]contracts.Service(nil), sampleServices...), contracts.Service{Name: "audit",
		Consumes: []contracts.Consume{{Event: "orders.order_created"}, {Event: "payments.payment_processed"}}})
	reg := sampleRegistry(t)
	type Shipped struct {
		OrderID string `json:"order_id"`
	}
	events.MustRegister[Shipped](reg, "shipping.order_shipped")
	current, err = contracts.Take(reg, added...)
	require.NoError(t, err)
	rep, err = contracts.Check(current, against, contracts.FullTransitive)
	require.NoError(t, err)
	assert.True(t, rep.OK(), rep)
	assert.Equal(t, []string{"shipping.order_shipped: new event (v1)"}, rep.Notes)
	assert.True(t, rep.Stale)
}

func TestTakeRejectsBadWiring(t *testing.T) {
	t.Parallel()
	reg := sampleRegistry(t)
	for _, c := range []struct {
		name string
		svc  []contracts.Service
		says string
	}{
		{"an unknown published event", []contracts.Service{{Name: "s", Publishes: []contracts.Publish{{Event: "x.y"}}}}, `service s publishes "x.y" (Publishes[0]), which is not registered`},
		{"an unknown consumed event", []contracts.Service{{Name: "s", Consumes: []contracts.Consume{{Event: "x.y"}}}}, `service s consumes "x.y" (Consumes[0]), which is not registered`},
		{"no name", []contracts.Service{{}}, `service name "" is invalid`},
		{"a bad handler name", []contracts.Service{{Name: "s", Consumes: []contracts.Consume{{Event: "orders.order_created", Handler: "a b"}}}}, `handler name "a b" is invalid`},
		{"two services of one name", []contracts.Service{{Name: "s"}, {Name: "s"}}, `two services named "s"`},
	} {
		_, err := contracts.Take(reg, c.svc...)
		assert.ErrorContains(t, err, c.says, c.name)
	}
	_, err := contracts.Take(nil)
	assert.Error(t, err)
	bad := events.NewRegistry()
	type WithFunc struct {
		F func() `json:"f"`
	}
	events.MustRegister[WithFunc](bad, "bad.func")
	_, err = contracts.Take(bad)
	assert.ErrorContains(t, err, "bad.func")
}

// TestUpdateKeepsHistory: Update appends a changed schema, keeps an
// unchanged one, starts over for a reused name and drops retired events;
// the result reads back equal.
func TestUpdateKeepsHistory(t *testing.T) {
	t.Parallel()
	s1 := take(t, noteOf[string](false))
	s2 := take(t, noteOf[string](true))
	s3 := take(t, versioned(2, 1))
	snap := contracts.Update(contracts.Update(contracts.Update(nil, s1), s1), s2)
	require.Len(t, snap.Events[0].Schemas, 2)
	snap = contracts.Update(snap, s3)
	got := snap.Events[0].Schemas
	require.Len(t, got, 3)
	assert.Equal(t, []int{1, 1, 2}, []int{got[0].Version, got[1].Version, got[2].Version})

	raw, err := snap.Marshal()
	require.NoError(t, err)
	back, err := contracts.ReadSnapshot(bytes.NewReader(raw))
	require.NoError(t, err)
	again, err := back.Marshal()
	require.NoError(t, err)
	assert.Equal(t, string(raw), string(again))

	reused := take(t, func(reg *events.Registry) {
		type Refund struct {
			ID string `json:"id"`
		}
		events.MustRegister[Refund](reg, ev)
	})
	assert.Len(t, contracts.Update(snap, reused).Events[0].Schemas, 1)
	assert.Empty(t, contracts.Update(snap, &contracts.Snapshot{}).Events)
	assert.True(t, errors.Is(&contracts.SnapshotError{Err: contracts.ErrNotJSON}, contracts.ErrNotJSON))
}

// TestCheckInvalidSnapshotsInMemory: snapshots built in code are checked
// too: an error, never a panic.
func TestCheckInvalidSnapshotsInMemory(t *testing.T) {
	t.Parallel()
	good := sampleSnapshot(t)
	empty := &contracts.Snapshot{Events: []contracts.Event{{Name: "orders.order_created", Type: "x.OrderCreated", ContentType: "application/json", Version: 2}}}
	for _, c := range []struct {
		name             string
		current, against *contracts.Snapshot
	}{
		{"no schemas recorded", good, empty},
		{"no current schema", empty, good},
	} {
		var err error
		require.NotPanics(t, func() { _, err = contracts.Check(c.current, c.against, contracts.FullTransitive) }, c.name)
		assert.ErrorIs(t, err, contracts.ErrInvalidSnapshot, c.name)
		assert.Equal(t, 2, contracts.ExitCode(err))
	}
	require.NotPanics(t, func() { contracts.Update(empty, good) })
	_, err := contracts.Check(good, nil, contracts.Backward)
	assert.Error(t, err)
}
