package contracttest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/contracts"
	"github.com/b2131a45/eventkit/contracts/contracttest"
	"github.com/b2131a45/eventkit/events"
)

// fakeT records what Check reports; Fatalf ends the goroutine as testing
// does.
type fakeT struct {
	testing.TB
	mu     sync.Mutex
	errors []string
	logs   []string
	fatal  bool
}

func (f *fakeT) Helper() {}
func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	f.fatal = true
}
func (f *fakeT) Logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}

func run(t *testing.T, check func(tb testing.TB)) *fakeT {
	t.Helper()
	f := &fakeT{TB: t}
	check(f)
	return f
}

type Order struct {
	OrderID string `json:"order_id"`
	Email   string `json:"customer_email"`
}

type OrderWithoutEmail struct {
	OrderID string `json:"order_id"`
}

func registry(register func(reg *events.Registry)) *events.Registry {
	reg := events.NewRegistry()
	register(reg)
	return reg
}

var (
	v1 = registry(func(reg *events.Registry) { events.MustRegister[Order](reg, "orders.order_placed") })
	// The same event with customer_email gone (the Go type renamed too,
	// which a snapshot tells apart from a reused name by the type's name:
	// so keep the name through a local type).
	v1NoEmail = registry(func(reg *events.Registry) {
		type Order OrderWithoutEmail
		events.MustRegister[Order](reg, "orders.order_placed")
	})
	services = []contracts.Service{{Name: "orders", Publishes: []contracts.Publish{{Event: "orders.order_placed"}}}}
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "testdata", "contracts.json")

	t.Run("a missing snapshot fails, saying how to write it", func(t *testing.T) {
		f := run(t, func(tb testing.TB) { contracttest.Check(tb, v1, path, contracts.Backward, services...) })
		require.True(t, f.fatal)
		assert.Contains(t, f.errors[0], "no contracts snapshot at "+path+": run the test with EVENTKIT_UPDATE_CONTRACTS=1 to write it, then commit it")
	})
	t.Run("EVENTKIT_UPDATE_CONTRACTS=1 writes it", func(t *testing.T) {
		t.Setenv(contracttest.UpdateEnv, "1")
		f := run(t, func(tb testing.TB) { contracttest.Check(tb, v1, path, contracts.Backward, services...) })
		require.Empty(t, f.errors)
		assert.Contains(t, f.logs, "contracttest: wrote "+path+"; commit it")
		snap, err := contracts.ReadSnapshotFile(path)
		require.NoError(t, err)
		assert.Len(t, snap.Events, 1)
		assert.Len(t, snap.Services, 1)
	})
	t.Run("the same contracts pass", func(t *testing.T) {
		f := run(t, func(tb testing.TB) { contracttest.Check(tb, v1, path, contracts.FullTransitive, services...) })
		assert.Empty(t, f.errors)
		assert.Empty(t, f.logs)
	})
	t.Run("a compatible change passes and says the snapshot is stale", func(t *testing.T) {
		f := run(t, func(tb testing.TB) { contracttest.Check(tb, v1NoEmail, path, contracts.Backward, services...) })
		assert.Empty(t, f.errors)
		require.Len(t, f.logs, 1)
		assert.Contains(t, f.logs[0], "changed compatibly")
	})
	t.Run("a breaking change fails, naming the event, version and field", func(t *testing.T) {
		f := run(t, func(tb testing.TB) { contracttest.Check(tb, v1NoEmail, path, contracts.Forward, services...) })
		require.Len(t, f.errors, 2)
		assert.False(t, f.fatal)
		assert.Contains(t, f.errors[0], `orders.order_placed v1, field "customer_email": removed`)
		assert.Contains(t, f.errors[1], "1 breaking change(s) against "+path+" under forward compatibility")
	})
	t.Run("an update accepts a breaking change and keeps the history", func(t *testing.T) {
		t.Setenv(contracttest.UpdateEnv, "1")
		f := run(t, func(tb testing.TB) { contracttest.Check(tb, v1NoEmail, path, contracts.Forward, services...) })
		require.Empty(t, f.errors)
		assert.Contains(t, strings.Join(f.logs, "\n"), "accepting a breaking change: orders.order_placed v1, field \"customer_email\"")
		snap, err := contracts.ReadSnapshotFile(path)
		require.NoError(t, err)
		assert.Len(t, snap.Events[0].Schemas, 2)
	})
	t.Run("after the update the change passes, but not transitively", func(t *testing.T) {
		f := run(t, func(tb testing.TB) { contracttest.Check(tb, v1NoEmail, path, contracts.Forward, services...) })
		assert.Empty(t, f.errors)
		f = run(t, func(tb testing.TB) { contracttest.Check(tb, v1NoEmail, path, contracts.ForwardTransitive, services...) })
		assert.NotEmpty(t, f.errors, "the transitive mode still sees the first schema")
	})
	t.Run("a broken snapshot fails, update or not", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.json")
		require.NoError(t, os.WriteFile(bad, []byte(`{"format": 1, "events": [`), 0o644))
		f := run(t, func(tb testing.TB) { contracttest.Check(tb, v1, bad, contracts.Backward) })
		require.True(t, f.fatal)
		assert.Contains(t, f.errors[0], "not valid JSON")
		t.Setenv(contracttest.UpdateEnv, "1")
		f = run(t, func(tb testing.TB) { contracttest.Check(tb, v1, bad, contracts.Backward) })
		require.True(t, f.fatal, "an update does not drop a history it cannot read")
	})
	t.Run("an event the registry lacks fails", func(t *testing.T) {
		empty := events.NewRegistry()
		f := run(t, func(tb testing.TB) { contracttest.Check(tb, empty, path, contracts.Backward) })
		require.True(t, f.fatal)
		assert.Contains(t, f.errors[0], `names an event the registry lacks: "orders.order_placed"`)
	})
	t.Run("bad wiring fails", func(t *testing.T) {
		f := run(t, func(tb testing.TB) {
			contracttest.Check(tb, v1, path, contracts.Backward, contracts.Service{Name: "x", Consumes: []contracts.Consume{{Event: "nope"}}})
		})
		require.True(t, f.fatal)
		assert.Contains(t, f.errors[0], `consumes "nope"`)
	})
}
