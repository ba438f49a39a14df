package forwarder_test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/testenv"
)

// proxy forwards TCP connections to target until cut: then it drops every
// connection and refuses new ones until restore. It simulates a broker
// outage without stopping the shared broker.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	served := make(chan struct{})
	go func() {
		defer close(served)
		p.serve()
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-served // no more pipes start after this
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		p.wg.Go(func() { pipe(up, c) })
		p.wg.Go(func() { pipe(c, up) })
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

func (p *proxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// rabbit connects to RabbitMQ or skips/fails the test.
func rabbit(t *testing.T) *amqp.Connection {
	t.Helper()
	conn, err := amqp.Dial(testenv.AMQPURL())
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// consume declares queue (with args) and counts the distinct Seq of the
// OrderCreated events it receives; a consumer slower than the relay when
// slow is true.
func consume(t *testing.T, conn *amqp.Connection, queue string, args amqp.Table, slow bool) func() int {
	t.Helper()
	ch, err := conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclare(queue, true, false, false, false, args)
	require.NoError(t, err)
	t.Cleanup(func() {
		if ch, err := conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(queue, false, false, false)
		}
	})
	require.NoError(t, ch.Qos(10, 0, false))
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	require.NoError(t, err)
	var mu sync.Mutex
	seen := map[int]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for d := range deliveries {
			if slow {
				time.Sleep(time.Millisecond)
			}
			var e OrderCreated
			if json.Unmarshal(d.Body, &e) == nil {
				mu.Lock()
				seen[e.Seq] = true
				mu.Unlock()
			}
			_ = d.Ack(false)
		}
	}()
	t.Cleanup(func() {
		_ = ch.Close()
		<-done
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
}

// stockPublisher is watermill-amqp with confirms, as a user would pass it.
func stockPublisher(t *testing.T, amqpURL string) *wmamqp.Publisher {
	t.Helper()
	cfg := wmamqp.NewDurableQueueConfig(amqpURL)
	cfg.Publish.ConfirmDelivery = true
	cfg.Publish.ChannelPoolSize = 1
	pub, err := wmamqp.NewPublisher(cfg, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

// confirmingAMQP publishes to the default exchange with pipelined publisher
// confirms and reports unconfirmed messages with NotConfirmed, as eventkit
// transports do; it dials again after a lost connection. (watermill-amqp
// v3.0.2 has a data race in its reconnection, which -race reports.)
type confirmingAMQP struct {
	url  string
	mu   sync.Mutex
	conn *amqp.Connection
	ch   *amqp.Channel
}

func (p *confirmingAMQP) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ch == nil || p.ch.IsClosed() {
		p.drop()
		conn, err := amqp.Dial(p.url)
		if err != nil {
			return err // a net.Error: unavailable
		}
		ch, err := conn.Channel()
		if err == nil {
			err = ch.Confirm(false)
		}
		if err != nil {
			_ = conn.Close()
			return err
		}
		p.conn, p.ch = conn, ch
	}
	var failed []string
	var why error = unavailableErr{"nacked"}
	dcs := make([]*amqp.DeferredConfirmation, len(msgs))
	for i, m := range msgs {
		dc, err := p.ch.PublishWithDeferredConfirm("", topic, false, false, amqp.Publishing{
			MessageId: m.UUID, DeliveryMode: amqp.Persistent, Body: m.Payload})
		if err != nil {
			why = err
			break
		}
		dcs[i] = dc
	}
	for i, dc := range dcs {
		if dc == nil || !dc.Wait() {
			failed = append(failed, msgs[i].UUID)
		}
	}
	if p.ch.IsClosed() {
		why = amqp.ErrClosed
		p.drop()
	}
	if len(failed) == 0 {
		return nil
	}
	return &notConfirmedErr{uuids: failed, err: why}
}

func (p *confirmingAMQP) drop() {
	if p.conn != nil {
		_ = p.conn.Close()
	}
	p.conn, p.ch = nil, nil
}

func (p *confirmingAMQP) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop()
	return nil
}

func TestRelay_RabbitMQOutageLosesNothingAndResumes(t *testing.T) {
	t.Parallel()
	conn := rabbit(t)
	e := newEnv(t, pgStd, func(c *forwarder.OutboxConfig) {
		c.Topic = func(string) string { return "eventkit.test." + c.Name }
	})
	queue := "eventkit.test." + e.name
	received := consume(t, conn, queue, nil, false)

	u, err := url.Parse(testenv.AMQPURL())
	require.NoError(t, err)
	px := newProxy(t, u.Host)
	viaProxy := *u
	viaProxy.Host = px.ln.Addr().String()

	cfg := fastRelay()
	cfg.MaxAttempts = 1 // a counted attempt would park a row
	e.add(orders(0, 100)...)
	pub := &confirmingAMQP{url: viaProxy.String()}
	t.Cleanup(func() { _ = pub.Close() })
	e.start(pub, cfg)
	require.Eventually(t, func() bool { return received() >= 100 }, 20*time.Second, 5*time.Millisecond)

	px.cut() // the broker goes away mid-stream
	for i := 100; i < 300; i += 20 {
		e.add(orders(i, 20)...)
	}
	time.Sleep(time.Second)
	require.Zero(t, e.stats().Failed, "an outage must not use up attempts")
	px.restore()

	require.Eventually(t, func() bool { return received() == 300 }, 30*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return e.stats().Published == 300 }, 10*time.Second, 10*time.Millisecond)
	require.Zero(t, e.stats().Failed)
}

func TestRelay_RabbitMQQueueOverflowLosesNothing(t *testing.T) {
	t.Parallel()
	conn := rabbit(t)
	e := newEnv(t, pgStd, func(c *forwarder.OutboxConfig) {
		c.Topic = func(string) string { return "eventkit.test." + c.Name }
	})
	queue := "eventkit.test." + e.name
	// The broker nacks what does not fit; the consumer is slower than the
	// relay.
	received := consume(t, conn, queue, amqp.Table{"x-max-length": int32(20), "x-overflow": "reject-publish"}, true)

	const n = 400
	for i := 0; i < n; i += 100 {
		e.add(orders(i, 100)...)
	}
	cfg := fastRelay()
	cfg.MaxAttempts = 1
	e.start(stockPublisher(t, testenv.AMQPURL()), cfg)
	require.Eventually(t, func() bool { return received() == n }, 60*time.Second, 10*time.Millisecond,
		"received %d of %d", received(), n)
	require.Eventually(t, func() bool { return e.stats().Published == n }, 10*time.Second, 10*time.Millisecond)
	require.Zero(t, e.stats().Failed, "a nack is back-pressure, not a rejection")
}

func TestIsUnavailable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("something else"), false},
		{unavailableErr{"x"}, true},
		{rejectedErr{"x"}, false},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{io.ErrUnexpectedEOF, true},
		{amqp.ErrClosed, true},
		{&amqp.Error{Code: amqp.ConnectionForced}, true},
		{&amqp.Error{Code: amqp.NoRoute}, false},
		{&amqp.Error{Code: amqp.PreconditionFailed}, false},
		{errors.New("not connected to AMQP"), true},
		{errors.New("delivery not confirmed for message [x]"), true},
	}
	for _, c := range cases {
		require.Equal(t, c.want, forwarder.IsUnavailable(c.err), "%v", c.err)
	}
}
