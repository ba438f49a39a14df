package kafka

import (
	"fmt"

	"github.com/IBM/sarama"
)

// Partitioner picks the partition of a keyed record.
type Partitioner string

const (
	// PartitionerMurmur2, the default, is the Java client's
	// (org.apache.kafka.clients.producer's default and built-in
	// partitioners), which kafkajs's DefaultPartitioner, librdkafka's
	// murmur2_random (Confluent's Go, Python and .NET clients with that
	// setting) and Kafka Streams use too: positive murmur2 of the key
	// modulo the partition count. Producers in other languages sharing a
	// topic then put a key on the same partition, which per-key order
	// needs.
	PartitionerMurmur2 Partitioner = "murmur2"
	// PartitionerFNV1a is Sarama's default hash partitioner (32-bit FNV-1a
	// of the key), which eventkit used before murmur2: set it to keep the
	// partitions of existing keys while upgrading (see the package
	// documentation).
	PartitionerFNV1a Partitioner = "fnv1a"
)

// constructor returns the Sarama partitioner. Records without a key go to
// a random partition with either.
func (p Partitioner) constructor() (sarama.PartitionerConstructor, error) {
	switch p {
	case "", PartitionerMurmur2:
		return newMurmur2Partitioner, nil
	case PartitionerFNV1a:
		return sarama.NewHashPartitioner, nil
	}
	return nil, fmt.Errorf("partitioner %q: want %s or %s", p, PartitionerMurmur2, PartitionerFNV1a)
}

type murmur2Partitioner struct {
	random sarama.Partitioner
}

func newMurmur2Partitioner(topic string) sarama.Partitioner {
	return murmur2Partitioner{random: sarama.NewRandomPartitioner(topic)}
}

func (p murmur2Partitioner) Partition(msg *sarama.ProducerMessage, numPartitions int32) (int32, error) {
	if msg.Key == nil {
		return p.random.Partition(msg, numPartitions)
	}
	key, err := msg.Key.Encode()
	if err != nil {
		return -1, err
	}
	return murmur2Partition(key, numPartitions), nil
}

func (murmur2Partitioner) RequiresConsistency() bool { return true }

// murmur2Partition is Kafka's Utils.toPositive(Utils.murmur2(key)) %
// numPartitions.
func murmur2Partition(key []byte, numPartitions int32) int32 {
	return int32(murmur2(key)&0x7fffffff) % numPartitions
}

// murmur2 is the 32-bit MurmurHash2 of Kafka's Java client
// (org.apache.kafka.common.utils.Utils.murmur2), seed 0x9747b28c.
func murmur2(data []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	length := len(data)
	h := seed ^ uint32(length)
	n := length / 4
	for i := range n {
		k := uint32(data[i*4]) | uint32(data[i*4+1])<<8 | uint32(data[i*4+2])<<16 | uint32(data[i*4+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := data[n*4:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
