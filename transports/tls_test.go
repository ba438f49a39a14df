package transports_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/transports"
)

// firstContact listens on loopback and reports what the first client to
// connect sends: handshake is called on the connection and its result is
// returned by wait. The listener closes with the test.
func firstContact(t *testing.T, handshake func(net.Conn) string) (addr string, wait func() string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	got := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := ln.Accept()
		_ = ln.Close() // later attempts are refused at once
		if err != nil {
			got <- "accept: " + err.Error()
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		got <- handshake(conn)
	}()
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return ln.Addr().String(), func() string {
		select {
		case s := <-got:
			return s
		case <-time.After(15 * time.Second):
			return "no connection"
		}
	}
}

// tlsHello reads a TLS ClientHello and returns "tls sni=<server name>", or
// what the client sent instead.
func tlsHello(conn net.Conn) string {
	var sni string
	seen := errors.New("seen")
	err := tls.Server(conn, &tls.Config{GetConfigForClient: func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		sni = hi.ServerName
		return nil, seen
	}}).Handshake()
	if errors.Is(err, seen) {
		return "tls sni=" + sni
	}
	return "not tls: " + err.Error()
}

// TestTLSOptionsReachTheWire opens each transport with its TLS option
// through transports.Open against a listener that records the client's
// first message: amqps:// and kafka://?tls=true start a TLS handshake (with
// the server name the URL asks for), postgres://?sslmode=require starts
// with PostgreSQL's SSLRequest and sslmode=disable does not. The errors
// (the listener is no broker) never show the password.
func TestTLSOptionsReachTheWire(t *testing.T) {
	t.Parallel()
	const secret = "Tls-Pa55word"
	open := func(t *testing.T, raw string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		tr, err := transports.Open(ctx, raw)
		if err == nil {
			_ = tr.Close()
			t.Fatalf("%s: opened a fake broker", raw)
		}
		require.NotContains(t, err.Error(), secret)
	}

	t.Run("AMQPS", func(t *testing.T) {
		t.Parallel()
		addr, wait := firstContact(t, tlsHello)
		open(t, "amqps://guest:"+secret+"@"+addr+"/?server_name_indication=rabbit.example&dial_timeout=10s")
		require.Equal(t, "tls sni=rabbit.example", wait())
	})
	t.Run("KafkaTLS", func(t *testing.T) {
		t.Parallel()
		addr, wait := firstContact(t, tlsHello)
		open(t, "kafka://alice:"+secret+"@"+addr+"?tls=true&sasl_mechanism=SCRAM-SHA-512&dial_timeout=10s")
		require.Equal(t, "tls sni=", wait()[:8])
	})
	pgFirst := func(conn net.Conn) string {
		var hdr [8]byte
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return "read: " + err.Error()
		}
		if bytes.Equal(hdr[:], []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}) {
			return "SSLRequest"
		}
		return "startup " + string(rune('0'+binary.BigEndian.Uint32(hdr[4:])>>16))
	}
	t.Run("PostgresSSLModeRequire", func(t *testing.T) {
		t.Parallel()
		addr, wait := firstContact(t, pgFirst)
		open(t, "postgres://u:"+secret+"@"+addr+"/db?sslmode=require&connect_timeout=3")
		require.Equal(t, "SSLRequest", wait())
	})
	t.Run("PostgresSSLModeDisable", func(t *testing.T) {
		t.Parallel()
		addr, wait := firstContact(t, pgFirst)
		open(t, "postgres://u:"+secret+"@"+addr+"/db?sslmode=disable&connect_timeout=3")
		require.Equal(t, "startup 3", wait(), "protocol 3 startup message, no TLS")
	})
}
