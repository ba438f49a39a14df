package amqp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/b2131a45/eventkit/transports/internal/errs"
)

// ErrNotConnected wraps the dial error while the broker is unreachable.
// Unavailable.
var ErrNotConnected error = errs.Unavailable("amqp: not connected")

// connector holds one connection and dials it again, on demand, after it
// was lost. It starts no goroutine of its own.
type connector struct {
	cfg    Config
	name   string
	logger *slog.Logger

	mu       sync.Mutex
	conn     *amqp.Connection
	closes   chan *amqp.Error // the current connection's close notification
	lastErr  error            // the last dial error, until a dial succeeds
	lastDial time.Time
	closed   bool
}

func newConnector(cfg Config, name string, logger *slog.Logger) *connector {
	return &connector{cfg: cfg, name: name, logger: logger.With("connection", name)}
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
		c.conn = nil
	}
	if c.lastErr != nil && time.Since(c.lastDial) < c.cfg.ReconnectInterval {
		return nil, fmt.Errorf("%w: %w", ErrNotConnected, c.lastErr)
	}

	c.lastDial = time.Now()
	conn, err := c.dial(ctx)
	if err != nil {
		if c.lastErr == nil {
			c.logger.Warn("amqp dial failed", "err", err)
		}
		c.lastErr = err
		return nil, fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	if c.lastErr != nil {
		c.logger.Info("amqp connection restored")
	}
	c.lastErr = nil
	c.conn = conn
	c.closes = conn.NotifyClose(make(chan *amqp.Error, 1))
	return conn, nil
}

func (c *connector) dial(ctx context.Context) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("eventkit " + c.name)
	timeout := c.cfg.DialTimeout
	return amqp.DialConfig(c.cfg.URL, amqp.Config{
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
			return conn, nil
		},
	})
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
