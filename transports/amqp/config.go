package amqp

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/b2131a45/eventkit/events"
)

// Defaults of Config.
const (
	DialTimeoutDefault       = 10 * time.Second
	ReconnectIntervalDefault = time.Second
	ConfirmTimeoutDefault    = 30 * time.Second
	PublishChannelsDefault   = 8
	PrefetchDefault          = 1
	ConcurrencyDefault       = 1
)

// Unroutable is what Publish does with a message no queue receives.
type Unroutable int

const (
	// UnroutableError publishes with the mandatory flag; a message the
	// broker returns as unroutable fails Publish with ErrUnroutable.
	UnroutableError Unroutable = iota
	// UnroutableDrop publishes without the mandatory flag: the broker
	// confirms and drops a message no queue is bound for (watermill-amqp's
	// behaviour).
	UnroutableDrop
)

func (u Unroutable) String() string {
	switch u {
	case UnroutableError:
		return "error"
	case UnroutableDrop:
		return "drop"
	default:
		return fmt.Sprintf("Unroutable(%d)", int(u))
	}
}

// Config configures the AMQP transport. Only URL is required; every other
// zero value means the documented default.
type Config struct {
	// URL of the broker: amqp:// or amqps://, user, password, host, port,
	// vhost, as amqp091-go parses it. Required.
	URL string

	// Hosts are the other nodes of the broker's cluster, "host" or
	// "host:port" each (the port defaults to the URL scheme's). Each
	// connection attempt tries URL's host and then Hosts in turn, with
	// URL's user, password, vhost and parameters, until one accepts; after
	// a connection is lost, the next attempt starts with the node after the
	// one it had, so that a node that went down is tried last. ParseURL
	// fills it from a URL listing several hosts:
	// amqp://user:pass@node1:5672,node2:5672,node3:5672/vhost. Defaults to
	// none: URL's host only.
	Hosts []string

	// TLS configures amqps:// connections. Defaults to amqp091-go's: system
	// roots, or the certfile, keyfile and cacertfile URL parameters.
	TLS *tls.Config

	// DialTimeout bounds each connection attempt, TCP and AMQP handshake.
	// Defaults to DialTimeoutDefault.
	DialTimeout time.Duration

	// ReconnectInterval is the least time between two connection attempts
	// after a failed one, and the pause before a lost subscription tries
	// again. Defaults to ReconnectIntervalDefault.
	ReconnectInterval time.Duration

	// ConfirmTimeout bounds how long Publish waits for the broker's
	// confirms of one call. Defaults to ConfirmTimeoutDefault.
	ConfirmTimeout time.Duration

	// PublishChannels is how many Publish calls may run at once, each on its
	// own confirm-mode channel; further calls wait for a free one.
	// Defaults to PublishChannelsDefault.
	PublishChannels int

	// Unroutable decides what happens to a message no queue is bound for.
	// Defaults to UnroutableError.
	Unroutable Unroutable

	// Prefetch is how many unacked messages the broker sends a subscription
	// ahead. Defaults to PrefetchDefault, which keeps a queue's order
	// through nacks; a higher value consumes faster, but a nacked message
	// may then come back after later ones.
	Prefetch int

	// Concurrency is how many messages of one subscription are handed out
	// at once: the next message goes to the handler without waiting for
	// the previous ones to be acked, up to Concurrency unacked. Defaults to
	// ConcurrencyDefault, one at a time, which keeps a queue's order. Above
	// one, handlers of a subscription run in parallel and the order between
	// messages is lost; it raises the throughput of handlers that wait (on
	// a database, on an inbox with group commit) without opening more
	// consumers. The broker never sends more than Prefetch unacked
	// messages, so Prefetch, if set, must be at least Concurrency; unset, it
	// defaults to Concurrency.
	Concurrency int

	// QueueArgs are the arguments of the queues subscribers declare, such
	// as x-queue-type, x-dead-letter-exchange or x-overflow. They must match
	// the arguments of queues that already exist. Defaults to none.
	//
	// On a cluster, x-queue-type "quorum" (URL parameter queue_type=quorum)
	// is the production setting: a quorum queue is replicated on a majority
	// of the nodes and confirms a message only once a majority has written
	// it, so it survives the loss of a minority of nodes; the delay queues
	// follow it (Publisher.Delay). A classic queue lives on one node.
	QueueArgs amqp.Table

	// Wire is how messages are written: events.WireEventkit (the
	// envelope in headers named after its metadata keys),
	// events.WireCloudEvents (CloudEvents binary mode, "cloudEvents:"
	// headers) or events.WireCloudEventsStructured (a structured
	// CloudEvent as the body). In every form the standard properties are
	// set: message-id, type, content-type, timestamp, correlation-id and
	// app-id. Subscribers read every form, and messages with only the
	// standard properties, whatever Wire says. Defaults to WireEventkit.
	Wire events.Wire

	// OnPublish, if set, is called with each message and the publishing
	// eventkit made of it, before it is sent: set properties or headers
	// of your own (priority, expiration, user-id…). An error fails the
	// Publish call for good (errors.Is ErrRejected). Defaults to nil.
	OnPublish func(msg *message.Message, p *amqp.Publishing) error

	// OnDelivery, if set, is called with each delivery and the message
	// eventkit made of it, before the message is handed out: read
	// properties or headers of your own into its metadata. Defaults to nil.
	OnDelivery func(d amqp.Delivery, msg *message.Message)

	// Logger receives connection losses and recoveries. Passwords are
	// masked. Defaults to discarding.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.DialTimeout == 0 {
		c.DialTimeout = DialTimeoutDefault
	}
	if c.ReconnectInterval == 0 {
		c.ReconnectInterval = ReconnectIntervalDefault
	}
	if c.ConfirmTimeout == 0 {
		c.ConfirmTimeout = ConfirmTimeoutDefault
	}
	if c.PublishChannels == 0 {
		c.PublishChannels = PublishChannelsDefault
	}
	if c.Concurrency == 0 {
		c.Concurrency = ConcurrencyDefault
	}
	if c.Prefetch == 0 {
		c.Prefetch = max(PrefetchDefault, c.Concurrency)
	}
	if c.Wire == "" {
		c.Wire = events.WireEventkit
	}
	return c
}

func (c Config) validate() error {
	if c.URL == "" {
		return fmt.Errorf("amqp: Config.URL is required")
	}
	if _, err := amqp.ParseURI(c.URL); err != nil {
		return fmt.Errorf("amqp: Config.URL: %w", err)
	}
	for i, h := range c.Hosts {
		if err := checkHost(h); err != nil {
			return fmt.Errorf("amqp: Config.Hosts[%d]: %w", i, err)
		}
	}
	for name, d := range map[string]time.Duration{
		"DialTimeout":       c.DialTimeout,
		"ReconnectInterval": c.ReconnectInterval,
		"ConfirmTimeout":    c.ConfirmTimeout,
	} {
		if d < 0 {
			return fmt.Errorf("amqp: Config.%s must not be negative, got %s", name, d)
		}
	}
	if c.PublishChannels < 0 {
		return fmt.Errorf("amqp: Config.PublishChannels must not be negative, got %d", c.PublishChannels)
	}
	if c.Prefetch < 0 {
		return fmt.Errorf("amqp: Config.Prefetch must not be negative, got %d", c.Prefetch)
	}
	if c.Concurrency < 0 {
		return fmt.Errorf("amqp: Config.Concurrency must not be negative, got %d", c.Concurrency)
	}
	if c.Prefetch > 0 && c.Concurrency > c.Prefetch {
		return fmt.Errorf("amqp: Config.Concurrency %d is more than Config.Prefetch %d: the broker would never send that many messages at once; raise Prefetch or leave it unset", c.Concurrency, c.Prefetch)
	}
	if _, err := events.ParseWire(string(c.Wire)); err != nil {
		return fmt.Errorf("amqp: Config.Wire: %w", err)
	}
	if c.Unroutable != UnroutableError && c.Unroutable != UnroutableDrop {
		return fmt.Errorf("amqp: Config.Unroutable is invalid: %s", c.Unroutable)
	}
	return nil
}

// password is the URL's password, for redaction.
func (c Config) password() string {
	uri, err := amqp.ParseURI(c.URL)
	if err != nil {
		return ""
	}
	return uri.Password
}

// checkHost accepts "host" and "host:port" (IPv6 literals bracketed).
func checkHost(h string) error {
	host, port := h, ""
	if strings.LastIndex(h, ":") > strings.LastIndex(h, "]") {
		var err error
		if host, port, err = net.SplitHostPort(h); err != nil {
			return fmt.Errorf("host %q: %w", h, err)
		}
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return fmt.Errorf("host %q has no name", h)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("host %q: port %q is not a number from 1 to 65535", h, port)
		}
	}
	return nil
}
