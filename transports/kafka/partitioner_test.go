package kafka

import (
	"testing"

	"github.com/IBM/sarama"
)

// TestMurmur2MatchesTheJavaClient checks murmur2 against the vectors of
// Kafka's own UtilsTest.testMurmur2 (the Java client's hash).
func TestMurmur2MatchesTheJavaClient(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	} {
		if got := int32(murmur2([]byte(key))); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestPartitioners(t *testing.T) {
	t.Parallel()
	ctor, err := PartitionerMurmur2.constructor()
	if err != nil {
		t.Fatal(err)
	}
	p := ctor("topic")
	for _, key := range []string{"order-1", "order-2", "a", ""} {
		got, err := p.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, 7)
		if err != nil {
			t.Fatal(err)
		}
		if want := murmur2Partition([]byte(key), 7); got != want {
			t.Errorf("partition of %q = %d, want %d", key, got, want)
		}
	}
	for range 20 { // keyless: any partition, never an error
		got, err := p.Partition(&sarama.ProducerMessage{}, 7)
		if err != nil || got < 0 || got >= 7 {
			t.Fatalf("keyless partition %d, %v", got, err)
		}
	}
	if _, err := Partitioner("crc32").constructor(); err == nil {
		t.Error("unknown partitioner accepted")
	}
	fnv, err := PartitionerFNV1a.constructor()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := sarama.NewHashPartitioner("topic").Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder("order-1")}, 7)
	if got, _ := fnv("topic").Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder("order-1")}, 7); got != want {
		t.Errorf("fnv1a partition %d, Sarama's %d", got, want)
	}
}
