package transporttest_test

import (
	"testing"

	"github.com/b2131a45/eventkit/transports/memory"
	"github.com/b2131a45/eventkit/transports/transporttest"
)

// A transport of your own proves the promises eventkit's middleware and
// relay rely on by running the conformance suite against its real service
// in a test (here the memory transport, which has no service; its own
// TestConformance in transports/memory is exactly this, so CI runs it).
func ExampleRun() {
	_ = func(t *testing.T) { // in a _test.go file: func TestConformance(t *testing.T)
		transporttest.Run(t, func(t *testing.T) transporttest.Transport {
			tr, err := memory.New(memory.Config{})
			if err != nil {
				t.Fatal(err)
			}
			return tr
		}, transporttest.Features{OrderedPerKey: true, OrderedPerTopic: true, NewGroupsSeeHistory: true})
	}
}
