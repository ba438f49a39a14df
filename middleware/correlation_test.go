package middleware_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
)

// logSink is a concurrency-safe buffer of JSON log lines.
type logSink struct{ testenv.Buffer }

func (s *logSink) lines(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m))
		out = append(out, m)
	}
	return out
}

func newLogger(sink *logSink) *slog.Logger {
	return slog.New(slog.NewJSONHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestCorrelation(t *testing.T) {
	t.Parallel()

	t.Run("EnvelopeLoggerAndBusPublishInsideHandler", func(t *testing.T) {
		t.Parallel()
		reg := newRegistry(t)
		tr := newMemory(t)
		sink := &logSink{}
		corr, err := middleware.NewCorrelation(middleware.CorrelationConfig{Logger: newLogger(sink)})
		require.NoError(t, err)
		bus, err := cqrs.NewBus(tr.Publisher(), cqrs.BusConfig{Registry: reg, Source: "inventory"})
		require.NoError(t, err)

		topic := testenv.Name(t, "orders")
		got := make(chan events.Envelope, 1)
		sub, err := tr.Subscriber("inventory")
		require.NoError(t, err)
		runRouter(t, sub, "inventory.reserve", topic, func(msg *message.Message) error {
			env, ok := events.EnvelopeFromContext(msg.Context())
			require.True(t, ok)
			middleware.LoggerFromContext(msg.Context()).Info("reserving")
			slog.New(middleware.NewLogHandler(slog.NewJSONHandler(sink, nil))).InfoContext(msg.Context(), "via handler")
			got <- env
			return bus.Publish(msg.Context(), StockReserved{OrderID: "o-1"})
		}, corr.Middleware)
		out := collect(t, tr.Subscriber, "probe", "inventory.stock_reserved")

		in := newEvent(t, reg, "o-1")
		in.Metadata.Set(events.KeyCorrelationID, "corr-42")
		require.NoError(t, tr.Publisher().Publish(topic, in))

		env := <-got
		require.Equal(t, in.UUID, env.ID)
		require.Equal(t, "corr-42", env.CorrelationID)
		require.Equal(t, "orders.order_placed", env.Name)

		published := out.wait(t, 1)[0]
		require.Equal(t, "corr-42", published.Metadata.Get(events.KeyCorrelationID))
		require.Equal(t, in.UUID, published.Metadata.Get(events.KeyCausationID))
		require.NotEqual(t, in.UUID, published.UUID)

		lines := sink.lines(t)
		require.Len(t, lines, 2)
		for _, l := range lines {
			require.Equal(t, in.UUID, l["event_id"], l)
			require.Equal(t, "orders.order_placed", l["event_name"], l)
			require.Equal(t, "corr-42", l["correlation_id"], l)
			require.Equal(t, "inventory.reserve", l["handler"], l)
			require.NotContains(t, l, "payload")
		}
	})

	t.Run("NoCorrelationIDStartsAConversation", func(t *testing.T) {
		t.Parallel()
		reg := newRegistry(t)
		corr, err := middleware.NewCorrelation(middleware.CorrelationConfig{Logger: discard})
		require.NoError(t, err)
		in := newEvent(t, reg, "o-1")
		delete(in.Metadata, events.KeyCorrelationID)
		var env events.Envelope
		_, err = corr.Middleware(func(m *message.Message) ([]*message.Message, error) {
			env, _ = events.EnvelopeFromContext(m.Context())
			require.Equal(t, in.UUID, events.CorrelationIDFromContext(m.Context()))
			require.Equal(t, in.UUID, events.CausationIDFromContext(m.Context()))
			return nil, nil
		})(in)
		require.NoError(t, err)
		require.Equal(t, in.UUID, env.CorrelationID)
	})

	t.Run("PlainWatermillHandlerOutputGetsIDs", func(t *testing.T) {
		t.Parallel()
		corr, err := middleware.NewCorrelation(middleware.CorrelationConfig{Logger: discard})
		require.NoError(t, err)
		in := message.NewMessage(watermill.NewUUID(), []byte("{}")) // stock message: no eventkit envelope
		in.Metadata.Set(events.KeyCorrelationID, "corr-7")
		kept := message.NewMessage("b", nil)
		kept.Metadata.Set(events.KeyCorrelationID, "own")
		out, err := corr.Middleware(func(m *message.Message) ([]*message.Message, error) {
			env, ok := events.EnvelopeFromContext(m.Context())
			require.True(t, ok)
			require.Equal(t, in.UUID, env.ID)
			return []*message.Message{message.NewMessage("a", nil), kept}, nil
		})(in)
		require.NoError(t, err)
		require.Equal(t, "corr-7", out[0].Metadata.Get(events.KeyCorrelationID))
		require.Equal(t, in.UUID, out[0].Metadata.Get(events.KeyCausationID))
		require.Equal(t, "own", out[1].Metadata.Get(events.KeyCorrelationID), "a set correlation id is kept")
		require.Equal(t, in.UUID, out[1].Metadata.Get(events.KeyCausationID))
	})

	t.Run("OutsideCorrelation", func(t *testing.T) {
		t.Parallel()
		require.Nil(t, middleware.LogAttrs(context.Background()))
		require.Equal(t, slog.Default(), middleware.LoggerFromContext(context.Background()))
	})
}

// TestCorrelationThreeHops runs a chain of three handlers on the memory
// transport: the correlation id of the first event reaches the last, and
// each causation id is the id of the event before.
func TestCorrelationThreeHops(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	tr := newMemory(t)
	corr, err := middleware.NewCorrelation(middleware.CorrelationConfig{Logger: discard})
	require.NoError(t, err)
	bus, err := cqrs.NewBus(tr.Publisher(), cqrs.BusConfig{Registry: reg})
	require.NoError(t, err)
	r, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	r.AddMiddleware(corr.Middleware)
	proc, err := cqrs.NewProcessor(r, tr.Subscriber, cqrs.ProcessorConfig{DeadLetter: tr.Publisher(), Registry: reg})
	require.NoError(t, err)
	var mu sync.Mutex
	envs := map[string]events.Envelope{}
	record := func(ctx context.Context, name string) {
		env, _ := events.EnvelopeFromContext(ctx)
		mu.Lock()
		envs[name] = env
		mu.Unlock()
	}
	require.NoError(t, proc.AddHandlers(
		cqrs.NewHandler("hop.a", func(ctx context.Context, e *OrderPlaced) error {
			record(ctx, "a")
			return bus.Publish(ctx, StockReserved{OrderID: e.OrderID})
		}),
		cqrs.NewHandler("hop.b", func(ctx context.Context, e *StockReserved) error {
			record(ctx, "b")
			return bus.Publish(ctx, ShipmentPlanned{OrderID: e.OrderID})
		}),
		cqrs.NewHandler("hop.c", func(ctx context.Context, e *ShipmentPlanned) error {
			record(ctx, "c")
			return nil
		}),
	))
	startRouter(t, r)
	require.NoError(t, bus.Publish(events.WithCorrelationID(context.Background(), "req-1"), OrderPlaced{OrderID: "o-1"}))
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(envs) == 3 }, 10*time.Second, 5*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for _, h := range []string{"a", "b", "c"} {
		require.Equal(t, "req-1", envs[h].CorrelationID, h)
	}
	require.Empty(t, envs["a"].CausationID)
	require.Equal(t, envs["a"].ID, envs["b"].CausationID)
	require.Equal(t, envs["b"].ID, envs["c"].CausationID)
}
