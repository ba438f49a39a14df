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

	// A relay that steps down during a broker outage (its connection to
	// the outbox lost while another relay takes the lock) stands by and
	// reports no outage it no longer sees. Found by the nemesis.
	t.Run("outage ends with the lead", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, pgStd)
		app := "ek_" + e.name
		db, err := sql.Open("pgx", withParam(testenv.PostgresURL(), "application_name", app))
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: e.reg, Name: e.name, Logger: testLogger(t)})
		require.NoError(t, err)
		down := &memBroker{}
		down.setFail(func(string, *message.Message) error { return unavailableErr{"broker down"} })
		first, err := forwarder.NewRelay(ob, down, fastRelay())
		require.NoError(t, err)
		rctx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel)
		done := make(chan error, 2)
		go func() { done <- first.Run(rctx) }()
		e.add(orders(0, 1)...)
		require.Eventually(t, func() bool { return errors.Is(first.Health(ctx), forwarder.ErrBrokerUnavailable) },
			10*time.Second, 5*time.Millisecond, "the outage is reported while the relay leads")

		up := &memBroker{}
		second, err := forwarder.NewRelay(e.ob, up, fastRelay())
		require.NoError(t, err)
		go func() { done <- second.Run(rctx) }()
		// The first relay loses its connections, and with them the lock;
		// the second takes it and publishes.
		require.Eventually(t, func() bool {
			_, _ = e.db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, app)
			return len(up.messages()) > 0
		}, 20*time.Second, 50*time.Millisecond, "the second relay took over")
		require.Eventually(t, func() bool { return first.Health(ctx) == nil }, 10*time.Second, 5*time.Millisecond,
			"the standby reports an outage it no longer sees: %v", first.Health(ctx))
		cancel()
		require.NoError(t, <-done)
		require.NoError(t, <-done)
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
