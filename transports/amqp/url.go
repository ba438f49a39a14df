package amqp

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/transports/internal/urlopt"
)

// ParseURL reads an amqp:// or amqps:// URL into a Config. User, password,
// host, port and vhost are amqp091-go's; several hosts, comma separated,
// are the nodes of a cluster (Config.Hosts):
// amqp://user:pass@node1:5672,node2:5672/vhost. Query parameters:
//
//	prefetch            Config.Prefetch, e.g. 10
//	concurrency         Config.Concurrency, e.g. 4
//	publish_channels    Config.PublishChannels
//	confirm_timeout     Config.ConfirmTimeout, e.g. 10s
//	dial_timeout        Config.DialTimeout
//	reconnect_interval  Config.ReconnectInterval
//	unroutable          Config.Unroutable: error or drop
//	wire                Config.Wire: eventkit, cloudevents or cloudevents-structured
//	queue_type          Config.QueueArgs x-queue-type: quorum or classic
//
// and amqp091-go's own heartbeat, channel_max, auth_mechanism, certfile,
// keyfile, cacertfile and server_name_indication. Any other parameter is
// an error. Errors never contain the password.
func ParseURL(rawURL string) (Config, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return Config{}, errors.New("malformed URL (are special characters in the user and password percent-encoded?)")
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return Config{}, fmt.Errorf("scheme %q is not amqp or amqps", u.Scheme)
	}
	if u.Hostname() == "" {
		return Config{}, errors.New("missing host")
	}

	var cfg Config
	hosts := strings.Split(u.Host, ",")
	for i, h := range hosts {
		if err := checkHost(h); err != nil {
			return Config{}, fmt.Errorf("host %d of %d: %w", i+1, len(hosts), err)
		}
	}
	u.Host, cfg.Hosts = hosts[0], hosts[1:]
	if len(cfg.Hosts) == 0 {
		cfg.Hosts = nil
	}
	unroutable, wire, queueType := "", "", ""
	opts := urlopt.New(u.Query())
	opts.Int("prefetch", &cfg.Prefetch)
	opts.Int("concurrency", &cfg.Concurrency)
	opts.Int("publish_channels", &cfg.PublishChannels)
	opts.Duration("confirm_timeout", &cfg.ConfirmTimeout)
	opts.Duration("dial_timeout", &cfg.DialTimeout)
	opts.Duration("reconnect_interval", &cfg.ReconnectInterval)
	opts.String("unroutable", &unroutable, UnroutableError.String(), UnroutableDrop.String())
	opts.String("wire", &wire, string(events.WireEventkit), string(events.WireCloudEvents), string(events.WireCloudEventsStructured))
	opts.String("queue_type", &queueType, "quorum", "classic")
	opts.Pass("heartbeat", "channel_max", "auth_mechanism", "certfile", "keyfile", "cacertfile", "server_name_indication")
	if err := opts.Err(); err != nil {
		return Config{}, err
	}
	if unroutable == UnroutableDrop.String() {
		cfg.Unroutable = UnroutableDrop
	}
	cfg.Wire = events.Wire(wire)
	if queueType != "" {
		cfg.QueueArgs = amqp.Table{"x-queue-type": queueType}
	}

	clean := *u
	clean.RawQuery = opts.Passed().Encode()
	cfg.URL = clean.String()
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}
