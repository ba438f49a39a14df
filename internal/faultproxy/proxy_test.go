package faultproxy_test

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/faultproxy"
)

// echo is a line echo server; it stops with the test.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, r *bufio.Reader, timeout time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	return r.ReadString('\n')
}

func TestProxyFaults(t *testing.T) {
	t.Parallel()
	p, err := faultproxy.New(echo(t))
	require.NoError(t, err)
	defer p.Close()

	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	line, err := roundTrip(c, r, 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "ping\n", line)

	// Latency: each way is delayed.
	p.SetLatency(100 * time.Millisecond)
	began := time.Now()
	_, err = roundTrip(c, r, 5*time.Second)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(began), 200*time.Millisecond)
	p.SetLatency(0)

	// Partition: nothing answers, on the open connection and on a new one;
	// healed, what was held arrives.
	p.Partition()
	_, err = roundTrip(c, r, 300*time.Millisecond)
	require.Error(t, err)
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout(), "the connection hangs, it is not closed: %v", err)
	c2, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err, "a partition accepts, as a lost SYN-ACK would not; the handshake above it hangs")
	r2 := bufio.NewReader(c2)
	_, err = roundTrip(c2, r2, 300*time.Millisecond)
	require.Error(t, err)
	p.Heal()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err = r.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "ping\n", line, "the held bytes arrive once healed")
	_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
	line, err = r2.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "ping\n", line)
	_ = c2.Close()

	// Reset: the open connections are closed; new ones work.
	require.Eventually(t, func() bool { return p.Reset() >= 1 }, 5*time.Second, 10*time.Millisecond)
	_, err = roundTrip(c, r, 2*time.Second)
	require.Error(t, err)
	c3, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c3.Close()
	line, err = roundTrip(c3, bufio.NewReader(c3), 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "ping\n", line)
	assert.Equal(t, 3, p.Accepted())
}

func TestCloseStopsEverything(t *testing.T) {
	t.Parallel()
	p, err := faultproxy.New(echo(t))
	require.NoError(t, err)
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	p.Partition() // a goroutine waits in the partition
	_, _ = c.Write([]byte("held\n"))
	done := make(chan struct{})
	go func() { _ = p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return: a goroutine did not stop")
	}
	_, err = net.DialTimeout("tcp", p.Addr(), time.Second)
	assert.Error(t, err, "closed, the proxy accepts no more")
}

func TestBreakRefusesUntilRestore(t *testing.T) {
	t.Parallel()
	p, err := faultproxy.New(echo(t))
	require.NoError(t, err)
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	_, err = roundTrip(c, r, 5*time.Second)
	require.NoError(t, err)

	p.Break()
	_, err = roundTrip(c, r, 2*time.Second)
	require.Error(t, err, "the open connection is cut")
	c2, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	_, err = roundTrip(c2, bufio.NewReader(c2), 2*time.Second)
	require.Error(t, err, "a new connection is closed at once")
	_ = c2.Close()

	p.Restore()
	c3, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c3.Close()
	line, err := roundTrip(c3, bufio.NewReader(c3), 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "ping\n", line)
}

// TestClientCloseEndsBothSides: when the client closes, the proxy closes
// its connection to the target at once, even though the target keeps its
// side open. (It used to half-close and then read the closed side again in
// a loop, spinning a core per connection until the target closed.)
func TestClientCloseEndsBothSides(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	release := make(chan struct{})
	defer close(release)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(io.Discard, c)
		<-release // keeps its side open, as a server waiting for a close frame
	}()
	p, err := faultproxy.New(ln.Addr().String())
	require.NoError(t, err)
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	_, err = c.Write([]byte("hello"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return p.Open() == 2 }, 5*time.Second, 5*time.Millisecond, "both sides connected")
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return p.Open() == 0 }, 5*time.Second, 5*time.Millisecond,
		"the proxy kept the connection after the client closed")
}
