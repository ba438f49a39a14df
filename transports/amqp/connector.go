package amqp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/b2131a45/eventkit/transports/internal/errs"
)

// ErrNotConnected wraps the dial error while the broker is unreachable.
// Unavailable.
var ErrNotConnected error = errs.Unavailable("amqp: not connected")

// ErrAccessRefused wraps the dial error when the broker refuses the URL's
// user: a wrong user or password (AMQP 403 ACCESS_REFUSED), or a SASL
// mechanism the broker does not offer. It is not a broker outage and does
// not heal by itself: Open returns it from its one attempt, without
// retrying, and a later dial (Config.ReconnectInterval after the failed
// one) succeeds only once the credentials or the user are fixed. By the outbox relay's convention it
// is Unavailable, not Permanent: the messages are not at fault, so a relay
// keeps them and pauses instead of spending their attempts.
//
// RabbitMQ answers a refused login only after a deliberate delay of 3 s
// (its anti-brute-force "silent close delay"), because amqp091-go does not
// announce the authentication_failure_close capability that would make it
// answer at once: a wrong password takes 3 s to fail where a closed port
// fails at once.
var ErrAccessRefused error = errs.Unavailable("amqp: access refused")

// connector holds one connection and dials it again, on demand, after it
// was lost. It starts no goroutine of its own.
type connector struct {
	cfg    Config
	name   string
	logger *slog.Logger

	mu       sync.Mutex
	conn     *amqp.Connection
	wire     *corkedConn      // the network connection under conn
	closes   chan *amqp.Error // the current connection's close notification
	lastErr  error            // the last dial error, until a dial succeeds
	lastDial time.Time
	next     int // the index in urls of the node the next dial tries first
	urls     []string
	closed   bool
	// connected is set once a dial succeeded. Until then every dial error
	// goes to the caller that asked for the connection (NewPublisher,
	// Subscriber, Health) and is not logged, so that it is reported once;
	// after a loss, the first failed reconnection is logged.
	connected bool
}

func newConnector(cfg Config, name string, logger *slog.Logger) *connector {
	return &connector{cfg: cfg, name: name, logger: logger.With("connection", name), urls: nodeURLs(cfg)}
}

// nodeURLs returns the URL of each node: Config.URL, then the URL with the
// host of each of Config.Hosts (Config.validate checked them).
func nodeURLs(cfg Config) []string {
	urls := []string{cfg.URL}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return urls
	}
	for _, h := range cfg.Hosts {
		n := *u
		n.Host = h
		urls = append(urls, n.String())
	}
	return urls
}

// get returns the open connection, dialing when there is none. After a
// failed dial it fails fast with the same error until ReconnectInterval has
// passed.
func (c *connector) get(ctx context.Context) (*amqp.Connection, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if c.conn != nil {
		if !c.conn.IsClosed() {
			return c.conn, nil
		}
		var reason error = amqp.ErrClosed
		select {
		case e := <-c.closes:
			if e != nil {
				reason = e
			}
		default:
		}
		c.logger.Warn("amqp connection lost", "err", reason)
		c.conn, c.wire = nil, nil
	}
	if c.lastErr != nil && time.Since(c.lastDial) < c.cfg.ReconnectInterval {
		return nil, c.lastErr
	}

	c.lastDial = time.Now()
	conn, wire, err := c.dial(ctx)
	if err != nil {
		err = c.dialError(err)
		if c.connected && c.lastErr == nil {
			c.logger.Warn("amqp reconnection failed", "err", err)
		}
		c.lastErr = err
		return nil, err
	}
	if c.lastErr != nil && c.connected {
		c.logger.Info("amqp connection restored")
	}
	c.lastErr = nil
	c.connected = true
	c.conn, c.wire = conn, wire
	c.closes = conn.NotifyClose(make(chan *amqp.Error, 1))
	return conn, nil
}

// wireOf returns the network connection under conn, nil when conn is no
// longer the current connection.
func (c *connector) wireOf(conn *amqp.Connection) *corkedConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != conn {
		return nil
	}
	return c.wire
}

// dialError classifies a dial error: ErrAccessRefused when the broker
// refused the user, ErrNotConnected otherwise.
func (c *connector) dialError(err error) error {
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.AccessRefused {
		return fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	uri, _ := amqp.ParseURI(c.cfg.URL) // Config.validate parsed it
	return fmt.Errorf("%w for user %q: check the user and password in the URL "+
		"(RabbitMQ answers a refused login after a deliberate 3 s delay): %w", ErrAccessRefused, uri.Username, err)
}

// dial connects to the first node of the cluster that accepts, trying
// them in turn from c.next. The next dial, after this connection is lost,
// starts with the node after it. It returns the last node's error, and
// says how many were tried.
func (c *connector) dial(ctx context.Context) (*amqp.Connection, *corkedConn, error) {
	var errs []error
	for i := range c.urls {
		at := (c.next + i) % len(c.urls)
		conn, wire, err := c.dialNode(ctx, c.urls[at])
		if err == nil {
			c.next = (at + 1) % len(c.urls)
			return conn, wire, nil
		}
		// Every node has the same users, but a node that is starting
		// refuses logins until it has them: the others are tried too.
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	last := errs[len(errs)-1]
	if len(errs) == 1 {
		return nil, nil, last
	}
	earlier := make([]string, len(errs)-1)
	for i, err := range errs[:len(errs)-1] {
		earlier[i] = err.Error()
	}
	return nil, nil, fmt.Errorf("none of the %d nodes tried accepted (%s): %w", len(errs), strings.Join(earlier, "; "), last)
}

func (c *connector) dialNode(ctx context.Context, nodeURL string) (*amqp.Connection, *corkedConn, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("eventkit " + c.name)
	timeout := c.cfg.DialTimeout
	var wire *corkedConn
	conn, err := amqp.DialConfig(nodeURL, amqp.Config{
		Properties:      props,
		TLSClientConfig: c.cfg.TLS,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Bounds the TLS and AMQP handshakes; amqp091-go clears it
			// once the connection is open.
			if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
				conn.Close()
				return nil, err
			}
			wire = &corkedConn{Conn: conn}
			return wire, nil
		},
	})
	if err != nil {
		return nil, nil, err
	}
	return conn, wire, nil
}

// close closes the connection; later gets fail with ErrClosed.
func (c *connector) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	if errors.Is(err, amqp.ErrClosed) {
		return nil
	}
	return err
}
