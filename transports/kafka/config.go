package kafka

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
)

// versionDefault is understood by Kafka 2.8 and later, Kafka 4 included.
var versionDefault = sarama.V2_8_0_0

// Defaults of Config.
const (
	ClientIDDefault           = "eventkit"
	DialTimeoutDefault        = 10 * time.Second
	SessionTimeoutDefault     = 10 * time.Second
	HeartbeatIntervalDefault  = 3 * time.Second
	NackResendIntervalDefault = 100 * time.Millisecond
)

// Config configures the Kafka transport. Only Brokers is required; every
// other zero value means the documented default.
type Config struct {
	// Brokers are host:port addresses of the cluster's bootstrap brokers.
	// Required.
	Brokers []string

	// Version is the Kafka protocol version Sarama speaks; it must not be
	// newer than the oldest broker's. At least V0_11_0_0 (idempotence).
	// Defaults to sarama.V2_8_0_0, which Kafka 2.8 and later, Kafka 4
	// included, understand.
	Version sarama.KafkaVersion

	// ClientID identifies the client to the brokers. Defaults to
	// ClientIDDefault.
	ClientID string

	// TLS enables TLS with this configuration. Defaults to plaintext.
	TLS *tls.Config

	// User and Password enable SASL authentication with Mechanism.
	// Defaults to none.
	User, Password string

	// Mechanism is the SASL mechanism of User and Password: MechanismPlain,
	// MechanismSCRAMSHA256 or MechanismSCRAMSHA512. Defaults to
	// MechanismPlain. PLAIN sends the password as is: use it over TLS only.
	Mechanism Mechanism

	// DialTimeout bounds each connection attempt. Defaults to
	// DialTimeoutDefault.
	DialTimeout time.Duration

	// Partitions and ReplicationFactor are those of the topics
	// SubscribeInitialize creates. Default to -1, the broker's defaults.
	Partitions        int32
	ReplicationFactor int16

	// SessionTimeout and HeartbeatInterval of consumer-group members.
	// Default to SessionTimeoutDefault and HeartbeatIntervalDefault. The
	// heartbeat interval must be below a third of the session timeout.
	SessionTimeout    time.Duration
	HeartbeatInterval time.Duration

	// NackResendInterval is how long a nacked message waits before it is
	// delivered again. Defaults to NackResendIntervalDefault.
	NackResendInterval time.Duration

	// Wire is how records are written: events.WireEventkit (the envelope
	// in headers named after its metadata keys), events.WireCloudEvents
	// (CloudEvents binary mode: "ce_" headers and content-type) or
	// events.WireCloudEventsStructured (a structured CloudEvent as the
	// value). In every form the record key is the partition key and the
	// record timestamp the event's occurred_at. Subscribers read every
	// form whatever Wire says. Defaults to WireEventkit.
	Wire events.Wire

	// Partitioner picks the partition of a keyed record. Defaults to
	// PartitionerMurmur2, the Java client's, which kafkajs and librdkafka
	// (murmur2_random) use too.
	Partitioner Partitioner

	// DelayLevels is how many retry topics per consumer group each
	// subscription consumes besides its topic (RetryTopicName, levels 1 to
	// DelayLevels), creating them when missing: the delayed rounds of
	// middleware.DelayedRetry come back through them, so it must be at
	// least the number of delay levels of the chain (middleware.Default
	// checks). -1 turns them off. Defaults to DelayLevelsDefault.
	DelayLevels int

	// OnProduce, if set, is called with each message and the record
	// eventkit made of it, before it is sent: set headers, the key or the
	// partition of your own. An error fails the Publish call for good
	// (errors.Is ErrRejected). Defaults to nil.
	OnProduce func(msg *message.Message, pm *sarama.ProducerMessage) error

	// OnConsume, if set, is called with each record and the message
	// eventkit made of it, before the message is handed out. Defaults to
	// nil.
	OnConsume func(km *sarama.ConsumerMessage, msg *message.Message)

	// Logger receives the subscribers' events: subscriptions starting and
	// stopping at Debug, consumer-group errors at Error. Passwords are
	// masked. Defaults to discarding.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Version == (sarama.KafkaVersion{}) {
		c.Version = versionDefault
	}
	if c.ClientID == "" {
		c.ClientID = ClientIDDefault
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DialTimeoutDefault
	}
	if c.Partitions == 0 {
		c.Partitions = -1
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = SessionTimeoutDefault
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = HeartbeatIntervalDefault
	}
	if c.NackResendInterval == 0 {
		c.NackResendInterval = NackResendIntervalDefault
	}
	if c.Wire == "" {
		c.Wire = events.WireEventkit
	}
	if c.Partitioner == "" {
		c.Partitioner = PartitionerMurmur2
	}
	switch c.DelayLevels {
	case 0:
		c.DelayLevels = DelayLevelsDefault
	case -1:
		c.DelayLevels = 0
	}
	return c
}

func (c Config) validate() error {
	if len(c.Brokers) == 0 {
		return fmt.Errorf("kafka: Config.Brokers is required")
	}
	for _, b := range c.Brokers {
		if b == "" {
			return fmt.Errorf("kafka: Config.Brokers has an empty address")
		}
	}
	if c.Version != (sarama.KafkaVersion{}) && !c.Version.IsAtLeast(sarama.V0_11_0_0) {
		return fmt.Errorf("kafka: Config.Version %s is older than 0.11.0.0, which the idempotent producer needs", c.Version)
	}
	if (c.User == "") != (c.Password == "") {
		return fmt.Errorf("kafka: Config.User and Config.Password must be set together")
	}
	switch c.Mechanism {
	case "", MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
	default:
		return fmt.Errorf("kafka: Config.Mechanism %q: want %s, %s or %s", c.Mechanism, MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512)
	}
	if c.Mechanism != "" && c.User == "" {
		return fmt.Errorf("kafka: Config.Mechanism %s needs Config.User and Config.Password", c.Mechanism)
	}
	for name, d := range map[string]time.Duration{
		"DialTimeout":        c.DialTimeout,
		"SessionTimeout":     c.SessionTimeout,
		"HeartbeatInterval":  c.HeartbeatInterval,
		"NackResendInterval": c.NackResendInterval,
	} {
		if d < 0 {
			return fmt.Errorf("kafka: Config.%s must not be negative, got %s", name, d)
		}
	}
	if _, err := events.ParseWire(string(c.Wire)); err != nil {
		return fmt.Errorf("kafka: Config.Wire: %w", err)
	}
	if _, err := c.Partitioner.constructor(); err != nil {
		return fmt.Errorf("kafka: Config.Partitioner: %w", err)
	}
	if c.DelayLevels < -1 || c.DelayLevels > 100 {
		return fmt.Errorf("kafka: Config.DelayLevels must be between 1 and 100, or -1 for none, got %d", c.DelayLevels)
	}
	if c.Partitions < -1 || c.ReplicationFactor < -1 {
		return fmt.Errorf("kafka: Config.Partitions and Config.ReplicationFactor must be positive, or -1 for the broker's default")
	}
	if err := c.withDefaults().sarama().Validate(); err != nil {
		return fmt.Errorf("kafka: invalid configuration: %w", err)
	}
	return nil
}

// sarama returns the Sarama configuration of producers and consumers. c
// must have its defaults.
func (c Config) sarama() *sarama.Config {
	sc := sarama.NewConfig()
	sc.ClientID = c.ClientID
	sc.Version = c.Version
	sc.Net.DialTimeout = c.DialTimeout
	if c.TLS != nil {
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = c.TLS
	}
	if c.User != "" {
		sc.Net.SASL.Enable = true
		sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
		if c.Mechanism == MechanismSCRAMSHA256 || c.Mechanism == MechanismSCRAMSHA512 {
			sc.Net.SASL.Mechanism = sarama.SASLMechanism(c.Mechanism)
			sc.Net.SASL.SCRAMClientGeneratorFunc = newSCRAM(c.Mechanism)
		}
		sc.Net.SASL.User = c.User
		sc.Net.SASL.Password = c.Password
	}

	// Safe producer: acks from all in-sync replicas, idempotent, so retries
	// neither lose, duplicate nor reorder.
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Retry.Max = 10
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Partitioner, _ = c.Partitioner.constructor() // validated

	// A new group starts at the oldest message, not after the newest.
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Return.Errors = true
	sc.Consumer.Group.Session.Timeout = c.SessionTimeout
	sc.Consumer.Group.Heartbeat.Interval = c.HeartbeatInterval
	return sc
}

// joinGroupMargin is how much longer than the rebalance timeout a consumer
// waits for the coordinator's answer to JoinGroup, as Kafka's Java client
// does (rebalance.timeout.ms + 5s).
const joinGroupMargin = 5 * time.Second

// consumerSarama returns the Sarama configuration of a subscription's
// consumer group. c must have its defaults.
func (c Config) consumerSarama() *sarama.Config {
	sc := c.sarama()
	// The coordinator answers JoinGroup only once every member has rejoined,
	// which may take up to the rebalance timeout (Sarama's default: 60s).
	// Sarama bounds every response by Net.ReadTimeout (30s), so a join
	// waiting on a slow member failed, the member rejoined and, on kfake,
	// restarted the rebalance's wait. Sarama has no per-request timeout
	// (IBM/sarama#2820): let the read timeout cover the rebalance timeout.
	sc.Net.ReadTimeout = max(sc.Net.ReadTimeout, sc.Consumer.Group.Rebalance.Timeout+joinGroupMargin)
	// The subscription drains Sarama's per-partition channel as fast as
	// Sarama fills it (see backlog), so a send on it only waits for the
	// scheduler. Sarama's default of 100ms is meant for application
	// processing; under load a starved goroutine could exceed it, and
	// Sarama v1.48 can then send on a closed channel when the partition is
	// released at the same moment (fixed upstream by IBM/sarama#3630).
	sc.Consumer.MaxProcessingTime = time.Second
	return sc
}
