package contracts

import (
	"fmt"
	"strings"
)

// Mode is a compatibility mode, as in a schema registry. It says which
// readers must be able to read which writers' events:
//
//   - Backward: consumers on the new contract read events written on the
//     previous one (consumers upgrade first; events still queued, retried
//     or replayed from a dead-letter topic were written before). A field
//     may be removed or added optional; a version may be bumped with an
//     upcaster from the previous version.
//   - Forward: consumers on the previous contract read events written on
//     the new one (producers upgrade first). A field may be added or an
//     optional one removed; the version may not change, as a consumer
//     rejects a version newer than its own.
//   - Full: both.
//
// The transitive modes check against every schema the snapshot recorded,
// not only the last one.
type Mode string

// Modes.
const (
	Backward           Mode = "backward"
	BackwardTransitive Mode = "backward_transitive"
	Forward            Mode = "forward"
	ForwardTransitive  Mode = "forward_transitive"
	Full               Mode = "full"
	FullTransitive     Mode = "full_transitive"
)

// Modes lists every mode.
var Modes = []Mode{Backward, BackwardTransitive, Forward, ForwardTransitive, Full, FullTransitive}

// ParseMode parses a mode name: "backward", "forward_transitive", …, in
// any case, with "-" or "_" ("BACKWARD_TRANSITIVE", "full-transitive").
func ParseMode(s string) (Mode, error) {
	m := Mode(strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "-", "_"))
	if !m.valid() {
		return "", fmt.Errorf("contracts: unknown compatibility mode %q (backward, forward, full, each optionally _transitive)", s)
	}
	return m, nil
}

func (m Mode) valid() bool {
	for _, x := range Modes {
		if m == x {
			return true
		}
	}
	return false
}

// Backward reports whether m checks backward compatibility.
func (m Mode) Backward() bool {
	return m == Backward || m == BackwardTransitive || m == Full || m == FullTransitive
}

// Forward reports whether m checks forward compatibility.
func (m Mode) Forward() bool {
	return m == Forward || m == ForwardTransitive || m == Full || m == FullTransitive
}

// Transitive reports whether m checks against every recorded schema.
func (m Mode) Transitive() bool {
	return m == BackwardTransitive || m == ForwardTransitive || m == FullTransitive
}
