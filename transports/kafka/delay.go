package kafka

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/transports/internal/errs"
)

// DelayLevelsDefault is the default Config.DelayLevels: as many retry topics
// per group as middleware's default delayed rounds.
const DelayLevelsDefault = 3

// maxTopicName is Kafka's limit on topic names.
const maxTopicName = 249

// RetryTopicName is the topic that holds the messages a consumer group
// delayed at level (from 1): topic.retry.group.level, with the group's ':'
// replaced by '-' (Kafka topics cannot hold ':'), or, when that is longer
// than Kafka allows, the first 200 bytes of topic, ".retry.", a hash of
// topic and group, "." and the level.
func RetryTopicName(topic, group string, level int) string {
	name := topic + ".retry." + strings.ReplaceAll(group, ":", "-") + "." + strconv.Itoa(level)
	if len(name) <= maxTopicName {
		return name
	}
	sum := sha256.Sum256([]byte(topic + "\x00" + group))
	return topic[:min(len(topic), 200)] + ".retry." + hex.EncodeToString(sum[:8]) + "." + strconv.Itoa(level)
}

// retryTopics returns the group's retry topics of topic, levels 1 to n.
func retryTopics(topic, group string, n int) []string {
	topics := make([]string, 0, max(n, 0))
	for level := 1; level <= n; level++ {
		topics = append(topics, RetryTopicName(topic, group, level))
	}
	return topics
}

// Delay publishes msgs, acks=all, to the group's retry topic of level
// (RetryTopicName), with events.KeyDeliverAt set to now + d and the same
// key, so that they come back, to that group only, once due: every
// subscription of the group also consumes its retry topics 1 to
// Config.DelayLevels, and holds a retry partition whose next message is not
// yet due, paused, until it is (the group's main topic and other partitions
// go on). Levels above Config.DelayLevels are an error: nothing would
// consume them. A delayed message comes back after the messages of its key
// published meanwhile: per-key order does not hold for it.
func (p *Publisher) Delay(topic, group string, level int, d time.Duration, msgs ...*message.Message) error {
	if level < 1 || level > p.cfg.DelayLevels {
		return &PublishError{Topic: topic, UUIDs: uuids(msgs),
			Err: fmt.Errorf("%w: kafka: delay level %d: the group's subscriptions consume levels 1 to %d (Config.DelayLevels, URL delay_levels)",
				ErrRejected, level, max(p.cfg.DelayLevels, 0))}
	}
	if err := errs.CheckName("kafka: consumer group", group); err != nil {
		return &PublishError{Topic: topic, UUIDs: uuids(msgs), Err: err}
	}
	if err := checkTopic(topic); err != nil {
		return &PublishError{Topic: topic, UUIDs: uuids(msgs), Err: err}
	}
	due := time.Now().Add(d).UTC().Format(time.RFC3339Nano)
	for _, m := range msgs {
		m.Metadata.Set(events.KeyDeliverAt, due)
	}
	return p.Publish(RetryTopicName(topic, group, level), msgs...)
}

// DelayLevels is Config.DelayLevels: how many levels the group's
// subscriptions bring back.
func (p *Publisher) DelayLevels() int { return max(p.cfg.DelayLevels, 0) }

// dueAt returns when a record of a retry topic is due: its
// events.KeyDeliverAt header, or the zero time (due now) when it has none or
// one that does not parse (the chain then says what is wrong with it).
func dueAt(km *sarama.ConsumerMessage) time.Time {
	for _, h := range km.Headers {
		if h != nil && string(h.Key) == events.KeyDeliverAt {
			t, err := events.ParseTime(string(h.Value))
			if err != nil {
				return time.Time{}
			}
			return t
		}
	}
	return time.Time{}
}
