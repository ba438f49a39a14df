package forwarder_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/testenv"
)

func TestRelayHealth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("not running, then running, then stopped", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, pgStd)
		relay, err := forwarder.NewRelay(e.ob, &memBroker{}, fastRelay())
		require.NoError(t, err)
		err = relay.Health(ctx)
		require.ErrorIs(t, err, forwarder.ErrRelayNotRunning)
		assert.NotErrorIs(t, err, forwarder.ErrDatabaseUnreachable)

		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- relay.Run(rctx) }()
		require.Eventually(t, func() bool { return relay.Health(ctx) == nil }, 10*time.Second, 5*time.Millisecond)
		cancel()
		require.NoError(t, <-done)
		require.ErrorIs(t, relay.Health(ctx), forwarder.ErrRelayNotRunning)
	})

	t.Run("broker outage and lag", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, pgStd)
		b := &memBroker{}
		b.setFail(func(string, *message.Message) error { return unavailableErr{"broker down"} })
		cfg := fastRelay()
		cfg.HealthMaxLag = 50 * time.Millisecond
		relay, err := forwarder.NewRelay(e.ob, b, cfg)
		require.NoError(t, err)
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- relay.Run(rctx) }()
		t.Cleanup(func() {
			cancel()
			<-done
		})
		require.Eventually(t, func() bool { return relay.Health(ctx) == nil }, 10*time.Second, 5*time.Millisecond)

		e.add(orders(0, 1)...)
		require.Eventually(t, func() bool {
			err := relay.Health(ctx)
			return errors.Is(err, forwarder.ErrBrokerUnavailable) && errors.Is(err, forwarder.ErrLagTooHigh)
		}, 10*time.Second, 5*time.Millisecond)

		b.setFail(nil)
		b.waitCount(t, 1, 10*time.Second)
		require.Eventually(t, func() bool { return relay.Health(ctx) == nil }, 10*time.Second, 5*time.Millisecond)
	})

	t.Run("broker check and database", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, pgStd)
		down := errors.New("no connection")
		cfg := fastRelay()
		cfg.BrokerHealth = func(context.Context) error { return down }
		// A second handle on the same outbox whose database is closed.
		db, err := sql.Open("pgx", testenv.PostgresURL())
		require.NoError(t, err)
		require.NoError(t, db.Close())
		ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: e.reg, Name: e.name})
		require.NoError(t, err)
		relay, err := forwarder.NewRelay(ob, &memBroker{}, cfg)
		require.NoError(t, err)
		err = relay.Health(ctx)
		assert.ErrorIs(t, err, forwarder.ErrBrokerUnavailable)
		assert.ErrorIs(t, err, down)
		assert.ErrorIs(t, err, forwarder.ErrDatabaseUnreachable)
		assert.ErrorIs(t, err, forwarder.ErrRelayNotRunning)
	})

	t.Run("lag", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, pgStd)
		lag, err := e.ob.Lag(ctx)
		require.NoError(t, err)
		assert.Zero(t, lag)
		e.add(orders(0, 2)...)
		require.Eventually(t, func() bool {
			lag, err := e.ob.Lag(ctx)
			return err == nil && lag > 0
		}, 10*time.Second, 5*time.Millisecond)
	})

	t.Run("config", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sqlite)
		cfg := fastRelay()
		cfg.HealthMaxLag = -time.Second
		_, err := forwarder.NewRelay(e.ob, &memBroker{}, cfg)
		assert.ErrorContains(t, err, "HealthMaxLag")
	})
}
