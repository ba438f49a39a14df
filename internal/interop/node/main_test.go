package node

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
