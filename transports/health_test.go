package transports_test

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/faultproxy"
	"github.com/b2131a45/eventkit/internal/kafkatest"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports"
	"github.com/b2131a45/eventkit/transports/amqp"
	"github.com/b2131a45/eventkit/transports/internal/testutil"
	"github.com/b2131a45/eventkit/transports/kafka"
)

func TestHealth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("amqp follows the connection", func(t *testing.T) {
		t.Parallel()
		broker, err := url.Parse(testenv.AMQPURL())
		require.NoError(t, err)
		proxy, err := faultproxy.New(broker.Host)
		require.NoError(t, err)
		t.Cleanup(func() { _ = proxy.Close() })
		via := *broker
		via.Host = proxy.Addr()
		via.RawQuery = "reconnect_interval=20ms&dial_timeout=2s"
		real, _ := broker.User.Password()
		var logs testutil.LogBuffer
		tr, err := transports.OpenConfig(ctx, via.String(), transports.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			testenv.Unavailable(t, "RabbitMQ", err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		require.NoError(t, tr.Health(ctx))
		sub, err := tr.Subscriber("health")
		require.NoError(t, err)
		t.Cleanup(func() { _ = sub.Close() })
		require.NoError(t, tr.Health(ctx), "with the subscribers' connection too")

		proxy.Break()
		require.Eventually(t, func() bool { return tr.Health(ctx) != nil }, 10*time.Second, 10*time.Millisecond)
		err = tr.Health(ctx)
		assert.ErrorIs(t, err, amqp.ErrNotConnected)
		if real != "" && len(real) > 3 {
			assert.NotContains(t, err.Error(), ":"+real+"@", "no password in the error")
		}
		assert.Contains(t, logs.String(), "amqp connection lost", "Config.Logger receives the transport's logs")

		proxy.Restore()
		require.Eventually(t, func() bool { return tr.Health(ctx) == nil }, 10*time.Second, 10*time.Millisecond)
		require.NoError(t, tr.Close())
		assert.Error(t, tr.Health(ctx), "closed")
	})

	t.Run("kafka asks the cluster", func(t *testing.T) {
		t.Parallel()
		cluster := kafkatest.Cluster(t)
		tr, err := transports.Open(ctx, "kafka://"+strings.Join(cluster.ListenAddrs(), ",")+"?dial_timeout=1s")
		require.NoError(t, err)
		t.Cleanup(func() { _ = tr.Close() })
		require.NoError(t, tr.Health(ctx))
		cluster.Close()
		err = tr.Health(ctx)
		require.Error(t, err)
		assert.ErrorIs(t, err, kafka.ErrUnavailable)
		require.NoError(t, tr.Close())
		assert.True(t, errors.Is(tr.Health(ctx), kafka.ErrClosed))
	})

	t.Run("postgres pings", func(t *testing.T) {
		t.Parallel()
		tr, err := transports.Open(ctx, testenv.WithDelayTable(t, testenv.PostgresURL()))
		if err != nil {
			testenv.Unavailable(t, "PostgreSQL", err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		require.NoError(t, tr.Health(ctx))
		require.NoError(t, tr.Close())
		assert.Error(t, tr.Health(ctx), "closed: the database it opened is closed")
	})

	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		tr, err := transports.Open(ctx, "mem://")
		require.NoError(t, err)
		t.Cleanup(func() { _ = tr.Close() })
		assert.NoError(t, tr.Health(ctx))
	})
}

func TestMessagingSystem(t *testing.T) {
	t.Parallel()
	tr, err := transports.Open(context.Background(), "mem://")
	require.NoError(t, err)
	defer tr.Close()
	assert.Equal(t, "memory", tr.MessagingSystem())
}
