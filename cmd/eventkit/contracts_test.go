package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/contracts"
	"github.com/b2131a45/eventkit/events"
)

type orderV1 struct {
	OrderID string `json:"order_id"`
	Total   int    `json:"total_cents"`
}

type orderV2 struct {
	OrderID string `json:"order_id"`
}

// snapshotOf writes the contracts of one event, of type T, to a file.
func snapshotOf[T any](t *testing.T, file string) string {
	t.Helper()
	reg := events.NewRegistry()
	require.NoError(t, events.Register[T](reg, "orders.order_created"))
	snap, err := contracts.Take(reg, contracts.Service{Name: "orders",
		Publishes: []contracts.Publish{{Event: "orders.order_created"}}})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), file)
	require.NoError(t, contracts.WriteSnapshotFile(path, snap))
	return path
}

func TestContractsCommands(t *testing.T) {
	t.Parallel()
	old := snapshotOf[orderV1](t, "old.json")
	same := snapshotOf[orderV1](t, "same.json")
	removed := snapshotOf[orderV2](t, "removed.json") // total_cents removed: breaks forward (old consumers read it)

	code, out, errOut := eventkit(t, "contracts", "export", old)
	require.Equal(t, exitOK, code, errOut)
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	assert.Equal(t, "3.0.0", doc["asyncapi"])

	code, out, _ = eventkit(t, "contracts", "export", "--format", "yaml", "--service", "orders", old)
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "asyncapi: 3.0.0")

	code, out, errOut = eventkit(t, "contracts", "check", "--against", old, same)
	require.Equal(t, exitOK, code, errOut)
	assert.NotEmpty(t, out)

	code, out, errOut = eventkit(t, "contracts", "check", "--mode", "forward", "--against", old, removed)
	require.Equal(t, exitError, code, "breaking changes exit 1: %s", errOut)
	assert.Contains(t, out, "total_cents")
	assert.Contains(t, out, "orders.order_created")

	bad := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"format":`), 0o600))
	for _, args := range [][]string{
		{"contracts", "check", "--against", bad, old},
		{"contracts", "check", "--against", old, filepath.Join(t.TempDir(), "missing.json")},
		{"contracts", "check", old},
		{"contracts", "check", "--mode", "sideways", "--against", old, same},
		{"contracts", "export"},
		{"contracts", "export", "--format", "xml", old},
		{"contracts", "export", bad},
	} {
		code, _, errOut := eventkit(t, args...)
		assert.Equal(t, exitUsage, code, "%v: %s", args, errOut)
	}
}
