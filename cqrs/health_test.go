package cqrs_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/transports"
)

func TestProcessorHealth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tr, err := transports.Open(ctx, "mem://")
	require.NoError(t, err)
	defer tr.Close()
	reg := events.NewRegistry()
	require.NoError(t, events.Register[StockHeld](reg, "health.stock_held"))
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	var brokerDown atomic.Bool
	down := errors.New("broker down")
	proc, err := cqrs.NewProcessor(router, tr.Subscriber, cqrs.ProcessorConfig{DeadLetter: tr.Publisher(), Registry: reg,
		BrokerHealth: func(ctx context.Context) error {
			if brokerDown.Load() {
				return down
			}
			return tr.Health(ctx)
		}})
	require.NoError(t, err)
	require.NoError(t, proc.AddHandlers(cqrs.NewHandler("health", func(context.Context, *StockHeld) error { return nil })))

	require.ErrorIs(t, proc.Health(ctx), cqrs.ErrNotRunning, "not started")

	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	<-router.Running()
	require.NoError(t, proc.Health(ctx))

	brokerDown.Store(true)
	err = proc.Health(ctx)
	assert.ErrorIs(t, err, cqrs.ErrBrokerUnavailable)
	assert.ErrorIs(t, err, down)
	assert.NotErrorIs(t, err, cqrs.ErrNotRunning)
	brokerDown.Store(false)

	require.NoError(t, router.Close())
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("router did not stop")
	}
	require.ErrorIs(t, proc.Health(ctx), cqrs.ErrNotRunning, "closed")
}
