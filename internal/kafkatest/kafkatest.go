// Package kafkatest starts in-process Kafka clusters (franz-go's kfake) for
// tests, tuned for speed: one broker, topics created on demand, and consumer
// group sessions allowed down to 100ms.
package kafkatest

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Cluster starts a cluster that t closes when it ends. opts come after the
// defaults and override them. Its brokers are at ListenAddrs().
func Cluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(4),
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
	}, opts...)...)
	if err != nil {
		t.Fatalf("start kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}
