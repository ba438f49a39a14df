// Package contracttest checks, in a Go test, that a service's events stay
// compatible with the contracts it committed: a snapshot file (package
// contracts) in the service's testdata.
//
//	func TestContracts(t *testing.T) {
//		contracttest.Check(t, reg, "testdata/contracts.json", contracts.Backward, services...)
//	}
//
// The test fails on every breaking change, each reported with the event,
// the version, the field and whom it breaks. To write the snapshot the first
// time, or to record a change (one that passes, or a break accepted on
// purpose), run the test with EVENTKIT_UPDATE_CONTRACTS=1 and commit the
// file: the history of each event's schemas is kept, so that the transitive
// modes can check against all of it.
package contracttest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/b2131a45/eventkit/contracts"
	"github.com/b2131a45/eventkit/events"
)

// UpdateEnv is the environment variable that, set to 1, makes Check write
// the snapshot instead of failing.
const UpdateEnv = "EVENTKIT_UPDATE_CONTRACTS"

// Check takes the contracts of reg and services (contracts.Take), compares
// them with the snapshot at path under mode (contracts.Check), and fails t
// with one error per breaking change. A snapshot that is missing, not
// valid JSON, of a newer format or naming an event reg lacks fails t too,
// saying what to do. When the contracts changed compatibly it logs that the
// snapshot is stale.
//
// With EVENTKIT_UPDATE_CONTRACTS=1 it writes the snapshot instead
// (contracts.Update of the old one, creating the folder if needed) and logs
// the breaks it accepted; it still fails t when the old snapshot cannot be
// read, rather than drop its history.
func Check(t testing.TB, reg *events.Registry, path string, mode contracts.Mode, services ...contracts.Service) {
	t.Helper()
	current, err := contracts.Take(reg, services...)
	if err != nil {
		t.Fatalf("contracttest: %v", err)
		return
	}
	CheckSnapshot(t, current, path, mode)
}

// CheckSnapshot is Check for contracts already taken.
func CheckSnapshot(t testing.TB, current *contracts.Snapshot, path string, mode contracts.Mode) {
	t.Helper()
	update := os.Getenv(UpdateEnv) == "1"
	old, err := contracts.ReadSnapshotFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && update:
		old = nil
	case errors.Is(err, fs.ErrNotExist):
		t.Fatalf("contracttest: no contracts snapshot at %s: run the test with %s=1 to write it, then commit it", path, UpdateEnv)
		return
	case err != nil:
		t.Fatalf("contracttest: %v", err)
		return
	}
	if update {
		if old != nil {
			if rep, err := contracts.Check(current, old, mode); err == nil {
				for _, b := range rep.Breaks {
					t.Logf("contracttest: %s=1: accepting a breaking change: %s", UpdateEnv, b)
				}
			} else {
				t.Logf("contracttest: %s=1: %v", UpdateEnv, err)
			}
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatalf("contracttest: %v", err)
			return
		}
		if err := contracts.WriteSnapshotFile(path, contracts.Update(old, current)); err != nil {
			t.Fatalf("contracttest: %v", err)
			return
		}
		t.Logf("contracttest: wrote %s; commit it", path)
		return
	}
	rep, err := contracts.Check(current, old, mode)
	if err != nil {
		t.Fatalf("contracttest: %v", err)
		return
	}
	for _, b := range rep.Breaks {
		t.Errorf("contracttest: %s", b)
	}
	if !rep.OK() {
		t.Errorf("contracttest: %d breaking change(s) against %s under %s compatibility; "+
			"if one is intended (every consumer is ready), record it with %s=1 and commit the snapshot", len(rep.Breaks), path, mode, UpdateEnv)
		return
	}
	if rep.Stale {
		t.Logf("contracttest: the contracts changed compatibly since %s; record them with %s=1 and commit it", path, UpdateEnv)
	}
}
