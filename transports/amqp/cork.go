package amqp

import (
	"net"
	"sync"
	"sync/atomic"
)

// corkMax is the most bytes a corked connection holds before it writes.
const corkMax = 64 << 10

// corkedConn is the network connection under a publisher's amqp091-go
// connection. amqp091-go flushes its buffer after every message: one write,
// one TCP segment and one socket read by the broker per message. While a
// Publish call sends its messages the connection is corked: their frames
// collect here and go out in writes of up to corkMax bytes, and uncork
// writes the rest before the call waits for its confirms. What a Publish
// call sends reaches the broker in the same order, only in fewer writes.
//
// Writes of other goroutines while corked (a heartbeat, another channel's
// frames) wait in the same buffer, at most until the call uncorks. A write
// that fails closes the connection: amqp091-go then shuts it down and fails
// every unconfirmed message, which the caller reports as not confirmed.
type corkedConn struct {
	net.Conn

	mu    sync.Mutex
	corks int    // Publish calls sending now
	buf   []byte // frames written while corked, not yet sent
	err   error  // the write error that closed the connection

	writes atomic.Int64 // writes made to the network connection
}

func (c *corkedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.corks == 0 && len(c.buf) == 0 {
		c.writes.Add(1)
		return c.Conn.Write(p)
	}
	c.buf = append(c.buf, p...)
	if c.corks == 0 || len(c.buf) >= corkMax {
		if err := c.flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// cork holds writes until the matching uncork.
func (c *corkedConn) cork() {
	c.mu.Lock()
	c.corks++
	c.mu.Unlock()
}

// uncork ends a cork and writes what is held, whatever other calls still
// hold theirs: a call about to wait for its confirms sends its frames now.
func (c *corkedConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corks--
	return c.flush()
}

func (c *corkedConn) flush() error {
	if c.err != nil || len(c.buf) == 0 {
		return c.err
	}
	c.writes.Add(1)
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > 4*corkMax {
		c.buf = nil // after a large message: do not keep its memory
	} else {
		c.buf = c.buf[:0]
	}
	if err != nil {
		c.err = err
		_ = c.Conn.Close() // amqp091-go's reader fails and shuts the connection down
	}
	return err
}
