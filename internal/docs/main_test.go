// Package docs holds README.md and docs/*.md to what a new user meets on a
// fresh clone: every fenced code block runs as written, is checked against
// code that runs, or says why it cannot run here and what proves it instead.
//
// The line before a block (the nearest non-blank one) is its marker:
//
//	<!-- file: PATH -->        the block is the file PATH, byte for byte
//	<!-- file: PATH#NAME -->   the block is the lines between "// docs:begin NAME"
//	                           and "// docs:end NAME" of PATH (less blank lines at
//	                           either end); here, Go test files that run them
//	<!-- output: NAME -->      docs/contracts.md only: the output of an evolution,
//	                           which contracts/docs_test.go checks
//	<!-- run: NAME -->         a block this package runs; NAME picks the runner
//	                           (runners in shell_test.go)
//	<!-- diagram -->           an ASCII diagram or URL forms: not code
//	<!-- not run: REASON -->   what cannot run here (Docker compose, the
//	                           10-minute benchmark, 60-second fuzz runs); REASON
//	                           names what proves it instead
//
// TestDocsBlocksAreMarked enforces the markers, TestDocsShowFiles the file
// markers of every page (internal/interop/node and contracts check theirs
// too), the Go tests of readme_test.go and observability_test.go run the
// regions the pages show, and shell_test.go runs the run: blocks.
package docs

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/b2131a45/eventkit/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.Main(m,
		// Sarama starts one process-wide metrics ticker (rcrowley/go-metrics) that never stops.
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
	)
}
