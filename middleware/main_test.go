package middleware_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/b2131a45/eventkit/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.Main(m,
		// Sarama's metrics registry starts a process-wide meter ticker that
		// never stops (rcrowley/go-metrics).
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
	)
}
