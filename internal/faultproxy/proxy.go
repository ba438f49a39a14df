// Package faultproxy is a TCP proxy that injects network faults between a
// client and a server: added latency, a partition (connections hang and
// nothing answers), resets, and a broken link (every connection cut, new ones
// refused). The fault tests and cmd/eventkit-nemesis
// put one in front of a broker or a database.
//
// A Proxy forwards every connection accepted on its loopback address to its
// target. Faults apply at once to the connections open and to the ones
// accepted later. It stops every goroutine it started on Close.
package faultproxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections to a target, with faults.
type Proxy struct {
	target string
	ln     net.Listener

	mu        sync.Mutex
	latency   time.Duration
	healed    chan struct{} // closed while not partitioned
	conns     map[net.Conn]struct{}
	accepted  int
	broken    bool
	closed    bool
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New starts a Proxy on 127.0.0.1 (a free port) forwarding to target
// ("host:port").
func New(target string) (*Proxy, error) {
	return Listen("127.0.0.1:0", target)
}

// Listen starts a Proxy on addr forwarding to target.
func Listen(addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen %s: %w", addr, err)
	}
	healed := make(chan struct{})
	close(healed)
	p := &Proxy{target: target, ln: ln, healed: healed, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address, "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted is how many connections the proxy accepted so far.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Open is how many connections the proxy holds open now.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) // a client side, then a target side once connected
}

// SetLatency delays every chunk of bytes, each way, by d (0: none).
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
}

// Partition stops forwarding: the connections open stay open but nothing
// they send arrives, and new connections are accepted but never reach the
// target, as when a network partition drops packets. Heal ends it.
func (p *Proxy) Partition() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.healed:
		p.healed = make(chan struct{})
	default: // already partitioned
	}
}

// Heal ends a partition: what was held is forwarded.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.healed:
	default:
		close(p.healed)
	}
}

// Reset closes every open connection, both sides, with a TCP reset where
// the system allows it, and reports how many it closed. The proxy goes on
// accepting new ones.
func (p *Proxy) Reset() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
		delete(p.conns, c)
		n++
	}
	return n / 2 // each connection is a client side and a target side
}

// Break cuts every open connection and refuses new ones (they are closed
// as soon as accepted) until Restore: the target looks gone.
func (p *Proxy) Break() {
	p.mu.Lock()
	p.broken = true
	p.mu.Unlock()
	p.Reset()
}

// Restore ends Break: new connections reach the target again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.broken = false
}

// Close stops the proxy, closes every connection and waits for its
// goroutines.
func (p *Proxy) Close() error {
	var err error
	p.closeOnce.Do(func() {
		err = p.ln.Close()
		p.mu.Lock()
		p.closed = true
		select {
		case <-p.healed:
		default:
			close(p.healed)
		}
		p.mu.Unlock()
		p.Reset()
		p.wg.Wait()
	})
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			if p.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of file descriptors, say: go on
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = client.Close()
			return
		}
		if p.broken {
			p.mu.Unlock()
			_ = client.Close()
			continue
		}
		p.accepted++
		p.conns[client] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(client)
	}
}

// serve connects client to the target once no partition holds it, and
// pumps bytes both ways until either side closes.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer p.forget(client)
	if !p.wait() {
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 10*time.Second)
	if err != nil {
		return // the client sees its connection closed, as a refused one
	}
	defer p.forget(server)
	p.mu.Lock()
	if _, open := p.conns[client]; !open || p.closed {
		p.mu.Unlock()
		_ = server.Close()
		return
	}
	p.conns[server] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.pump(server, client); done <- struct{}{} }()
	go func() { p.pump(client, server); done <- struct{}{} }()
	<-done
	_ = client.Close()
	_ = server.Close()
	<-done
}

// pump copies from src to dst until src ends, holding each chunk through a partition and
// for the latency.
func (p *Proxy) pump(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait() {
				return
			}
			p.mu.Lock()
			d := p.latency
			p.mu.Unlock()
			if d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // either way ending ends both: AMQP and PostgreSQL do not half-close
		}
	}
}

// wait blocks while a partition holds; false once the proxy is closed.
func (p *Proxy) wait() bool {
	for {
		p.mu.Lock()
		healed, closed := p.healed, p.closed
		p.mu.Unlock()
		if closed {
			return false
		}
		<-healed
		p.mu.Lock()
		again := p.healed != healed
		p.mu.Unlock()
		if !again {
			return !p.isClosed()
		}
	}
}

func (p *Proxy) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *Proxy) forget(c net.Conn) {
	_ = c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}
