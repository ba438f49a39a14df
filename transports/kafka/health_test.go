package kafka_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/b2131a45/eventkit/internal/kafkatest"
	"github.com/b2131a45/eventkit/transports/kafka"
)

// countingListen is a kfake.ListenFn that counts the connections the
// cluster accepts.
func countingListen(accepted *atomic.Int64) kfake.Opt {
	return kfake.ListenFn(func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		if err != nil {
			return nil, err
		}
		return countingListener{ln, accepted}, nil
	})
}

type countingListener struct {
	net.Listener
	accepted *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// freePort returns a loopback port nobody listens on, for a cluster that
// goes away and comes back at the same address.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

// warmUp makes Health's client and lets it open its connections: the first
// call's client talks to the seed broker, and the first metadata request
// after it goes to the broker the metadata named (a broker of its own in
// Sarama, though at the same address), which Sarama dials once.
func warmUp(t *testing.T, tr *kafka.Transport) {
	t.Helper()
	for range 2 {
		require.NoError(t, tr.Health(context.Background()))
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("reuses one client", func(t *testing.T) {
		t.Parallel()
		var accepted atomic.Int64
		cfg, _ := config(t, countingListen(&accepted))
		tr := newTransport(t, cfg)
		warmUp(t, tr)
		first := accepted.Load()
		for range 20 {
			require.NoError(t, tr.Health(ctx))
		}
		assert.Equal(t, first, accepted.Load(), "20 more Health calls opened %d connections", accepted.Load()-first)
	})

	t.Run("concurrent calls share the client", func(t *testing.T) {
		t.Parallel()
		var accepted atomic.Int64
		cfg, _ := config(t, countingListen(&accepted))
		tr := newTransport(t, cfg)
		warmUp(t, tr)
		first := accepted.Load()
		var wg sync.WaitGroup
		errs := make(chan error, 16*10)
		for range 16 {
			wg.Go(func() {
				for range 10 {
					errs <- tr.Health(ctx)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		assert.Equal(t, first, accepted.Load(), "160 concurrent Health calls opened %d connections", accepted.Load()-first)
	})

	t.Run("a call waiting for its turn honours its context", func(t *testing.T) {
		t.Parallel()
		cfg, cluster := config(t)
		tr := newTransport(t, cfg)
		require.NoError(t, tr.Health(ctx)) // the client exists: the next call asks for metadata
		release := make(chan struct{})
		var held atomic.Bool
		cluster.ControlKey(int16(kmsg.Metadata), func(kmsg.Request) (kmsg.Response, error, bool) {
			if held.CompareAndSwap(false, true) {
				cluster.SleepControl(func() { <-release })
			}
			return nil, nil, false
		})
		slow := make(chan error, 1)
		go func() { slow <- tr.Health(ctx) }()
		require.Eventually(t, held.Load, 10*time.Second, 5*time.Millisecond)

		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := tr.Health(short)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Less(t, time.Since(start), 5*time.Second, "the waiting call returned when its context ended")
		close(release)
		require.NoError(t, <-slow)
	})

	t.Run("recovers when the cluster comes back", func(t *testing.T) {
		t.Parallel()
		port := freePort(t)
		first := kafkatest.Cluster(t, kfake.Ports(port))
		addrs := first.ListenAddrs() // a closed kfake cluster blocks ListenAddrs
		tr := newTransport(t, kafka.Config{Brokers: addrs, DialTimeout: time.Second})
		require.NoError(t, tr.Health(ctx))

		first.Close()
		err := tr.Health(ctx)
		require.Error(t, err)
		assert.ErrorIs(t, err, kafka.ErrUnavailable)
		assert.ErrorIs(t, tr.Health(ctx), kafka.ErrUnavailable, "still down")

		again := kafkatest.Cluster(t, kfake.Ports(port))
		require.Equal(t, addrs, again.ListenAddrs())
		require.Eventually(t, func() bool { return tr.Health(ctx) == nil }, 20*time.Second, 20*time.Millisecond)
	})

	t.Run("a first call while the cluster is down", func(t *testing.T) {
		t.Parallel()
		// The publisher needs the cluster to start; Health's client is made
		// only by the first call, so a cluster that is down then and back
		// later is seen once it is back.
		port := freePort(t)
		first := kafkatest.Cluster(t, kfake.Ports(port))
		tr := newTransport(t, kafka.Config{Brokers: first.ListenAddrs(), DialTimeout: time.Second})
		first.Close()
		assert.ErrorIs(t, tr.Health(ctx), kafka.ErrUnavailable)
		kafkatest.Cluster(t, kfake.Ports(port))
		require.Eventually(t, func() bool { return tr.Health(ctx) == nil }, 20*time.Second, 20*time.Millisecond)
	})

	t.Run("Close closes the client, during calls too", func(t *testing.T) {
		t.Parallel()
		cfg, _ := config(t)
		tr, err := kafka.New(cfg)
		require.NoError(t, err)
		require.NoError(t, tr.Health(ctx))
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 20 {
					if err := tr.Health(ctx); err != nil && !errors.Is(err, kafka.ErrClosed) {
						t.Errorf("Health during Close: %v", err)
						return
					}
				}
			})
		}
		require.NoError(t, tr.Close())
		wg.Wait()
		assert.ErrorIs(t, tr.Health(ctx), kafka.ErrClosed)
		require.NoError(t, tr.Close(), "twice")
		// TestMain's goleak check fails the package if the client's
		// goroutines outlive Close.
	})
}
