package amqp_test

import (
	"io"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/faultproxy"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports/amqp"
	"github.com/b2131a45/eventkit/transports/internal/testutil"
)

func TestParseURLCluster(t *testing.T) {
	t.Parallel()
	cfg, err := amqp.ParseURL("amqp://u:p@node1:5672,node2,node3:5674/shop?queue_type=quorum")
	require.NoError(t, err)
	assert.Equal(t, "amqp://u:p@node1:5672/shop", cfg.URL)
	assert.Equal(t, []string{"node2", "node3:5674"}, cfg.Hosts)
	assert.Equal(t, amqp091.Table{"x-queue-type": "quorum"}, cfg.QueueArgs)

	cfg, err = amqp.ParseURL("amqp://u:p@node1/?queue_type=classic")
	require.NoError(t, err)
	assert.Nil(t, cfg.Hosts)
	assert.Equal(t, amqp091.Table{"x-queue-type": "classic"}, cfg.QueueArgs)

	for raw, want := range map[string]string{
		"amqp://u:hunter2@node1,,node3/":       `host 2 of 3: host "" has no name`,
		"amqp://u:hunter2@node1,node2:99999/":  `host 2 of 2: host "node2:99999": port "99999" is not a number from 1 to 65535`,
		"amqp://u:hunter2@node1,:5672/":        `host 2 of 2: host ":5672" has no name`,
		"amqp://u:hunter2@node1/?queue_type=x": `invalid value "x" for option "queue_type"`,
	} {
		_, err := amqp.ParseURL(raw)
		require.ErrorContains(t, err, want, raw)
		require.NotContains(t, err.Error(), "hunter2", raw)
	}
	_, err = amqp.New(t.Context(), amqp.Config{URL: "amqp://h/", Hosts: []string{"ok:1", "bad:port"}})
	require.ErrorContains(t, err, "Config.Hosts[1]")
}

// TestClusterFailover: with several nodes, a connection goes to the first
// that accepts, and after it is lost the next one is tried first. The
// "nodes" are proxies in front of the one test broker, so that the test
// sees which one each connection took.
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	cfg := config(t)
	broker, err := url.Parse(cfg.URL)
	require.NoError(t, err)
	var nodes []*faultproxy.Proxy
	for range 2 {
		p, err := faultproxy.New(broker.Host)
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Close() })
		nodes = append(nodes, p)
	}
	down, err := faultproxy.New(broker.Host)
	require.NoError(t, err)
	down.Break() // a node that is down: connections refused
	t.Cleanup(func() { _ = down.Close() })

	first := *broker
	first.Host = down.Addr()
	clustered := cfg
	clustered.URL = first.String()
	clustered.Hosts = []string{nodes[0].Addr(), nodes[1].Addr()}
	clustered.ReconnectInterval = 50 * time.Millisecond
	clustered.DialTimeout = 2 * time.Second
	tr := newTransport(t, clustered)

	topic := testenv.Name(t, "cluster")
	sub, err := tr.Subscriber("g")
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	msgs := testutil.Subscribe(t, sub, topic)
	m := message.NewMessage(watermill.NewUUID(), []byte("one"))
	require.NoError(t, tr.Publisher().Publish(topic, m))
	require.Equal(t, m.UUID, testutil.Receive(t, msgs).UUID)
	assert.Zero(t, down.Accepted(), "a node that refuses takes no connection")
	require.Positive(t, nodes[0].Accepted(), "the first node up takes the connections")
	took := nodes[1].Accepted()

	// The node dies: the connections move to the next one and go on.
	nodes[0].Break()
	after := message.NewMessage(watermill.NewUUID(), []byte("after"))
	require.Eventually(t, func() bool { return tr.Publisher().Publish(topic, after) == nil },
		20*time.Second, 50*time.Millisecond, "the publisher did not fail over")
	for {
		if got := testutil.Receive(t, msgs); got.UUID == after.UUID {
			break
		}
	}
	assert.Greater(t, nodes[1].Accepted(), took, "the next node took the new connections")
}

// TestClusterTriesPastARefusedLogin: a node that is starting refuses
// logins (it closes the connection after the client's credentials, which
// the client reads as ACCESS_REFUSED) until it has loaded its users; the
// next node is tried and takes the connection. Found by the nemesis: a
// refused login used to stop the dial at the first node.
func TestClusterTriesPastARefusedLogin(t *testing.T) {
	t.Parallel()
	cfg := config(t)
	broker, err := url.Parse(cfg.URL)
	require.NoError(t, err)
	booting := refusingNode(t)
	first := *broker
	first.Host = booting
	clustered := cfg
	clustered.URL = first.String()
	clustered.Hosts = []string{broker.Host}
	clustered.DialTimeout = 2 * time.Second
	tr := newTransport(t, clustered)

	topic := testenv.Name(t, "booting")
	sub, err := tr.Subscriber("g")
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	msgs := testutil.Subscribe(t, sub, topic)
	m := message.NewMessage(watermill.NewUUID(), []byte("one"))
	require.NoError(t, tr.Publisher().Publish(topic, m))
	require.Equal(t, m.UUID, testutil.Receive(t, msgs).UUID)
}

// refusingNode listens on a loopback port and answers every AMQP client as
// a RabbitMQ node refuses a login while it boots: connection.start, then
// the socket closed once the client's start-ok arrives.
func refusingNode(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	// connection.start (class 10, method 10): version 0-9, no server
	// properties, mechanisms "PLAIN", locales "en_US".
	payload := []byte{0, 10, 0, 10, 0, 9, 0, 0, 0, 0, 0, 0, 0, 5, 'P', 'L', 'A', 'I', 'N', 0, 0, 0, 5, 'e', 'n', '_', 'U', 'S'}
	frame := append([]byte{1, 0, 0, 0, 0, 0, byte(len(payload))}, payload...)
	frame = append(frame, 0xCE)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				header := make([]byte, 8) // "AMQP" 0 0 9 1
				if _, err := io.ReadFull(conn, header); err != nil {
					return
				}
				if _, err := conn.Write(frame); err != nil {
					return
				}
				_, _ = conn.Read(make([]byte, 4096)) // start-ok: the credentials
			}()
		}
	}()
	return ln.Addr().String()
}
