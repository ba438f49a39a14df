package kafka

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/IBM/sarama"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/transports/internal/urlopt"
)

// ParseURL reads a kafka:// URL into a Config:
//
//	kafka://[user:password@]host:port[,host2:port...][?options]
//
// A user and password enable SASL (PLAIN unless sasl_mechanism says
// otherwise). Query parameters:
//
//	version              Config.Version, e.g. 3.6.0
//	client_id            Config.ClientID
//	tls                  true for TLS (1.2 or later) with the system's roots
//	sasl_mechanism       Config.Mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
//	dial_timeout         Config.DialTimeout, e.g. 5s
//	partitions           Config.Partitions
//	replication_factor   Config.ReplicationFactor
//	session_timeout      Config.SessionTimeout
//	heartbeat_interval   Config.HeartbeatInterval
//	nack_resend_interval Config.NackResendInterval
//	wire                 Config.Wire: eventkit, cloudevents or cloudevents-structured
//	partitioner          Config.Partitioner: murmur2 or fnv1a
//	delay_levels         Config.DelayLevels, e.g. 5, or -1 for none
//
// Any other parameter is an error. Errors never contain the password.
func ParseURL(rawURL string) (Config, error) {
	rest, ok := strings.CutPrefix(rawURL, "kafka://")
	if !ok {
		scheme, _, _ := strings.Cut(rawURL, "://")
		return Config{}, fmt.Errorf("scheme %q is not kafka", scheme)
	}
	rest, fragment, _ := strings.Cut(rest, "#")
	if fragment != "" {
		return Config{}, errors.New("a kafka URL has no fragment")
	}
	authority, rawQuery, _ := strings.Cut(rest, "?")
	authority = strings.TrimSuffix(authority, "/")
	if strings.Contains(authority, "/") {
		return Config{}, errors.New("a kafka URL has no path")
	}

	var cfg Config
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		userinfo := authority[:at]
		authority = authority[at+1:]
		user, password, hasPassword := strings.Cut(userinfo, ":")
		var err error
		if cfg.User, err = url.PathUnescape(user); err != nil {
			return Config{}, errors.New("malformed user name")
		}
		if cfg.Password, err = url.PathUnescape(password); err != nil {
			return Config{}, errors.New("malformed password")
		}
		if cfg.User == "" || !hasPassword || cfg.Password == "" {
			return Config{}, errors.New("SASL needs both a user and a password")
		}
	}
	if authority == "" {
		return Config{}, errors.New("missing broker host")
	}
	for _, broker := range strings.Split(authority, ",") {
		host, port, err := net.SplitHostPort(broker)
		if err != nil || host == "" {
			return Config{}, fmt.Errorf("broker %q is not host:port", broker)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return Config{}, fmt.Errorf("broker %q has an invalid port", broker)
		}
		cfg.Brokers = append(cfg.Brokers, broker)
	}

	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return Config{}, errors.New("malformed query")
	}
	var (
		version                 string
		useTLS                  bool
		partitions, replication int
	)
	opts := urlopt.New(query)
	opts.String("version", &version)
	opts.String("client_id", &cfg.ClientID)
	opts.Bool("tls", &useTLS)
	var mechanism string
	opts.String("sasl_mechanism", &mechanism, string(MechanismPlain), string(MechanismSCRAMSHA256), string(MechanismSCRAMSHA512))
	opts.Duration("dial_timeout", &cfg.DialTimeout)
	opts.Int("partitions", &partitions)
	opts.Int("replication_factor", &replication)
	opts.Duration("session_timeout", &cfg.SessionTimeout)
	opts.Duration("heartbeat_interval", &cfg.HeartbeatInterval)
	opts.Duration("nack_resend_interval", &cfg.NackResendInterval)
	var wire, partitioner string
	opts.String("wire", &wire, string(events.WireEventkit), string(events.WireCloudEvents), string(events.WireCloudEventsStructured))
	opts.String("partitioner", &partitioner, string(PartitionerMurmur2), string(PartitionerFNV1a))
	var delayLevels string
	opts.String("delay_levels", &delayLevels)
	if err := opts.Err(); err != nil {
		return Config{}, err
	}
	if version != "" {
		if cfg.Version, err = sarama.ParseKafkaVersion(version); err != nil {
			return Config{}, fmt.Errorf("invalid value %q for option \"version\": want a Kafka version such as 3.6.0", version)
		}
	}
	cfg.Mechanism = Mechanism(mechanism)
	cfg.Wire = events.Wire(wire)
	cfg.Partitioner = Partitioner(partitioner)
	if delayLevels != "" {
		n, err := strconv.Atoi(delayLevels)
		if err != nil || n == 0 || n < -1 {
			return Config{}, fmt.Errorf("invalid value %q for option \"delay_levels\": want a positive integer, or -1 for none", delayLevels)
		}
		cfg.DelayLevels = n
	}
	if useTLS {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if partitions > 1<<31-1 || replication > 1<<15-1 {
		return Config{}, errors.New("partitions or replication_factor is too large")
	}
	cfg.Partitions = int32(partitions)
	cfg.ReplicationFactor = int16(replication)
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}
