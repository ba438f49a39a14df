package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/middleware"
)

var (
	errBoom = errors.New("boom")
	discard = slog.New(slog.DiscardHandler)
)

func fastRetry(t testing.TB, cfg middleware.RetryConfig) *middleware.Retry {
	t.Helper()
	if cfg.InitialInterval == 0 {
		cfg.InitialInterval = time.Millisecond
	}
	if cfg.MaxInterval == 0 {
		cfg.MaxInterval = 5 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = discard
	}
	r, err := middleware.NewRetry(cfg)
	require.NoError(t, err)
	return r
}

func TestRetry(t *testing.T) {
	t.Parallel()

	t.Run("RetriesUntilSuccessWithAttemptInContext", func(t *testing.T) {
		t.Parallel()
		r := fastRetry(t, middleware.RetryConfig{MaxAttempts: 5})
		var attempts []int
		h := r.Middleware(func(msg *message.Message) ([]*message.Message, error) {
			attempts = append(attempts, middleware.AttemptFromContext(msg.Context()))
			if len(attempts) < 3 {
				return nil, errBoom
			}
			return []*message.Message{message.NewMessage("out", nil)}, nil
		})
		msg := message.NewMessage("1", nil)
		out, err := h(msg)
		require.NoError(t, err)
		require.Len(t, out, 1)
		require.Equal(t, []int{1, 2, 3}, attempts)
		require.Equal(t, int64(2), r.Retries())
		require.Equal(t, 1, middleware.AttemptFromContext(msg.Context()), "context restored after the retries")
	})

	t.Run("StopsAtMaxAttempts", func(t *testing.T) {
		t.Parallel()
		r := fastRetry(t, middleware.RetryConfig{MaxAttempts: 3})
		calls := 0
		_, err := r.Middleware(func(*message.Message) ([]*message.Message, error) {
			calls++
			return []*message.Message{message.NewMessage("dropped", nil)}, errBoom
		})(message.NewMessage("1", nil))
		require.Equal(t, 3, calls)
		var re *middleware.RetryError
		require.ErrorAs(t, err, &re)
		require.Equal(t, 3, re.Attempts)
		require.True(t, re.Exhausted)
		require.ErrorIs(t, err, errBoom)
		require.Equal(t, middleware.ReasonRetriesExhausted, middleware.ReasonOf(err))
	})

	t.Run("PermanentErrorsAreNotRetried", func(t *testing.T) {
		t.Parallel()
		for _, perm := range []error{
			middleware.Permanent(errBoom),
			&events.DecodeError{Name: "x", Err: errBoom},
			fmt.Errorf("wrapped: %w", events.ErrUnknownEvent),
			events.ErrUnsupportedVersion,
		} {
			r := fastRetry(t, middleware.RetryConfig{MaxAttempts: 5})
			calls := 0
			_, err := r.Middleware(func(*message.Message) ([]*message.Message, error) {
				calls++
				return nil, perm
			})(message.NewMessage("1", nil))
			require.Equal(t, 1, calls, "%v", perm)
			var re *middleware.RetryError
			require.ErrorAs(t, err, &re)
			require.False(t, re.Exhausted)
			require.Equal(t, 1, re.Attempts)
			require.ErrorIs(t, err, perm)
		}
	})

	t.Run("RetryableDecides", func(t *testing.T) {
		t.Parallel()
		r := fastRetry(t, middleware.RetryConfig{MaxAttempts: 5, Retryable: func(err error) bool { return !errors.Is(err, errBoom) }})
		calls := 0
		_, err := r.Middleware(func(*message.Message) ([]*message.Message, error) {
			calls++
			return nil, errBoom
		})(message.NewMessage("1", nil))
		require.Equal(t, 1, calls)
		require.Equal(t, middleware.ReasonPermanent, middleware.ReasonOf(err))
	})

	t.Run("BackoffGrowsExponentially", func(t *testing.T) {
		t.Parallel()
		r := fastRetry(t, middleware.RetryConfig{MaxAttempts: 4, InitialInterval: 20 * time.Millisecond, MaxInterval: time.Second, Jitter: -1})
		var at []time.Time
		_, _ = r.Middleware(func(*message.Message) ([]*message.Message, error) {
			at = append(at, time.Now())
			return nil, errBoom
		})(message.NewMessage("1", nil))
		require.Len(t, at, 4)
		for i, want := range []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond} {
			gap := at[i+1].Sub(at[i])
			require.GreaterOrEqual(t, gap, want, "gap %d", i)
			require.Less(t, gap, want+200*time.Millisecond, "gap %d", i)
		}
	})

	t.Run("MaxIntervalCapsAndMaxElapsedStops", func(t *testing.T) {
		t.Parallel()
		r := fastRetry(t, middleware.RetryConfig{MaxAttempts: 100, InitialInterval: 30 * time.Millisecond, MaxInterval: 30 * time.Millisecond, MaxElapsed: 100 * time.Millisecond})
		calls := 0
		start := time.Now()
		_, err := r.Middleware(func(*message.Message) ([]*message.Message, error) {
			calls++
			return nil, errBoom
		})(message.NewMessage("1", nil))
		require.Less(t, time.Since(start), time.Second)
		require.GreaterOrEqual(t, calls, 2)
		require.LessOrEqual(t, calls, 4)
		var re *middleware.RetryError
		require.ErrorAs(t, err, &re)
		require.True(t, re.Exhausted)
	})

	t.Run("StopsOnShutdownWithoutMoreAttempts", func(t *testing.T) {
		t.Parallel()
		r := fastRetry(t, middleware.RetryConfig{MaxAttempts: 10, InitialInterval: time.Hour, MaxInterval: time.Hour, MaxElapsed: -1})
		ctx, cancel := context.WithCancel(context.Background())
		msg := message.NewMessage("1", nil)
		msg.SetContext(ctx)
		calls := 0
		time.AfterFunc(20*time.Millisecond, cancel)
		start := time.Now()
		_, err := r.Middleware(func(*message.Message) ([]*message.Message, error) {
			calls++
			return nil, errBoom
		})(msg)
		require.Less(t, time.Since(start), 5*time.Second)
		require.Equal(t, 1, calls)
		require.ErrorIs(t, err, middleware.ErrInterrupted)
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorIs(t, err, errBoom)
	})

	t.Run("ErrorAfterContextEndIsInterrupted", func(t *testing.T) {
		t.Parallel()
		r := fastRetry(t, middleware.RetryConfig{MaxAttempts: 10})
		ctx, cancel := context.WithCancel(context.Background())
		msg := message.NewMessage("1", nil)
		msg.SetContext(ctx)
		calls := 0
		_, err := r.Middleware(func(m *message.Message) ([]*message.Message, error) {
			calls++
			cancel()
			return nil, m.Context().Err()
		})(msg)
		require.Equal(t, 1, calls)
		require.ErrorIs(t, err, middleware.ErrInterrupted)
	})

	t.Run("OnRetryHookSeesEachRetry", func(t *testing.T) {
		t.Parallel()
		var mu sync.Mutex
		var seen []int
		r := fastRetry(t, middleware.RetryConfig{MaxAttempts: 3, OnRetry: func(_ context.Context, attempt int, err error, delay time.Duration) {
			mu.Lock()
			seen = append(seen, attempt)
			mu.Unlock()
		}})
		_, _ = r.Middleware(func(*message.Message) ([]*message.Message, error) { return nil, errBoom })(message.NewMessage("1", nil))
		require.Equal(t, []int{1, 2}, seen)
	})

	t.Run("EachAttemptGetsAFreshTimeout", func(t *testing.T) {
		t.Parallel()
		r := fastRetry(t, middleware.RetryConfig{MaxAttempts: 3})
		var errs []error
		h := r.Middleware(middleware.Timeout(30 * time.Millisecond)(func(m *message.Message) ([]*message.Message, error) {
			if middleware.AttemptFromContext(m.Context()) == 1 {
				<-m.Context().Done() // the first attempt runs out of time
				errs = append(errs, m.Context().Err())
				return nil, m.Context().Err()
			}
			errs = append(errs, m.Context().Err())
			return nil, nil
		}))
		_, err := h(message.NewMessage("1", nil))
		require.NoError(t, err)
		require.Len(t, errs, 2)
		require.ErrorIs(t, errs[0], context.DeadlineExceeded)
		require.NoError(t, errs[1], "the retry must not inherit the expired context (watermill#467)")
	})
}

func TestRetryConfigValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg   middleware.RetryConfig
		field string
	}{
		{middleware.RetryConfig{MaxAttempts: -1}, "MaxAttempts"},
		{middleware.RetryConfig{InitialInterval: -time.Second}, "InitialInterval"},
		{middleware.RetryConfig{MaxInterval: -time.Second}, "MaxInterval"},
		{middleware.RetryConfig{InitialInterval: time.Minute, MaxInterval: time.Second}, "MaxInterval"},
		{middleware.RetryConfig{Multiplier: 0.5}, "Multiplier"},
		{middleware.RetryConfig{Jitter: 1.5}, "Jitter"},
		{middleware.RetryConfig{Jitter: -0.5}, "Jitter"},
		{middleware.RetryConfig{MaxElapsed: -2 * time.Second}, "MaxElapsed"},
	} {
		_, err := middleware.NewRetry(tc.cfg)
		require.ErrorContains(t, err, tc.field, "%+v", tc.cfg)
	}
	r, err := middleware.NewRetry(middleware.RetryConfig{})
	require.NoError(t, err)
	cfg := r.Config()
	require.Equal(t, middleware.RetryMaxAttemptsDefault, cfg.MaxAttempts)
	require.Equal(t, middleware.RetryInitialIntervalDefault, cfg.InitialInterval)
	require.Equal(t, middleware.RetryMaxIntervalDefault, cfg.MaxInterval)
	require.Equal(t, middleware.RetryMultiplierDefault, cfg.Multiplier)
	require.Equal(t, middleware.RetryJitterDefault, cfg.Jitter)
	require.Equal(t, middleware.RetryMaxElapsedDefault, cfg.MaxElapsed)
}

func TestRetryHorizon(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     middleware.RetryConfig
		timeout time.Duration
		want    time.Duration
	}{
		{"attempts bound", middleware.RetryConfig{MaxAttempts: 4, InitialInterval: time.Second, MaxInterval: time.Minute, Jitter: -1, MaxElapsed: -1}, 0, 7 * time.Second},
		{"capped delays", middleware.RetryConfig{MaxAttempts: 4, InitialInterval: time.Second, MaxInterval: 2 * time.Second, Jitter: -1, MaxElapsed: -1}, 0, 5 * time.Second},
		{"jitter widens", middleware.RetryConfig{MaxAttempts: 2, InitialInterval: time.Second, MaxInterval: time.Minute, Jitter: 0.5, MaxElapsed: -1}, 0, 1500 * time.Millisecond},
		{"attempt timeouts count", middleware.RetryConfig{MaxAttempts: 2, InitialInterval: time.Second, MaxInterval: time.Minute, Jitter: -1, MaxElapsed: -1}, 10 * time.Second, 21 * time.Second},
		{"elapsed bound", middleware.RetryConfig{MaxAttempts: 1000, InitialInterval: time.Second, MaxInterval: time.Hour, MaxElapsed: time.Minute}, 5 * time.Second, 65 * time.Second},
		{"no retry", middleware.RetryConfig{MaxAttempts: 1}, 3 * time.Second, 3 * time.Second},
	} {
		r, err := middleware.NewRetry(tc.cfg)
		require.NoError(t, err)
		require.Equal(t, tc.want, r.Horizon(tc.timeout), tc.name)
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	require.NoError(t, middleware.Permanent(nil))
	err := middleware.Permanent(errBoom)
	require.True(t, events.IsPermanent(err))
	require.True(t, events.IsPermanent(fmt.Errorf("wrapped: %w", err)))
	require.ErrorIs(t, err, errBoom)
	require.False(t, events.IsPermanent(errBoom))
	require.Contains(t, err.Error(), "boom")
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	t.Run("DeadlineThenRestored", func(t *testing.T) {
		t.Parallel()
		msg := message.NewMessage("1", nil)
		parent := msg.Context()
		_, err := middleware.Timeout(10 * time.Millisecond)(func(m *message.Message) ([]*message.Message, error) {
			dl, ok := m.Context().Deadline()
			require.True(t, ok)
			require.WithinDuration(t, time.Now().Add(10*time.Millisecond), dl, 10*time.Millisecond)
			<-m.Context().Done()
			return nil, m.Context().Err()
		})(msg)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, middleware.ReasonTimeout, middleware.ReasonOf(&middleware.RetryError{Attempts: 3, Exhausted: true, Err: err}))
		require.Equal(t, parent, msg.Context())
	})
	t.Run("ZeroIsPassThrough", func(t *testing.T) {
		t.Parallel()
		_, err := middleware.Timeout(0)(func(m *message.Message) ([]*message.Message, error) {
			_, ok := m.Context().Deadline()
			require.False(t, ok)
			return nil, nil
		})(message.NewMessage("1", nil))
		require.NoError(t, err)
	})
}

func TestRecover(t *testing.T) {
	t.Parallel()
	_, err := middleware.Recover(func(*message.Message) ([]*message.Message, error) {
		panic("kaboom")
	})(message.NewMessage("1", nil))
	var pe *middleware.PanicError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "kaboom", pe.Value)
	require.Contains(t, string(pe.Stack), "TestRecover", "the stack of the panicking handler")
	require.Equal(t, middleware.ReasonPanic, middleware.ReasonOf(&middleware.RetryError{Attempts: 2, Exhausted: true, Err: err}))

	_, err = middleware.Recover(func(*message.Message) ([]*message.Message, error) {
		panic(fmt.Errorf("wrapped: %w", errBoom))
	})(message.NewMessage("1", nil))
	require.ErrorIs(t, err, errBoom)

	out, err := middleware.Recover(func(*message.Message) ([]*message.Message, error) {
		return []*message.Message{message.NewMessage("2", nil)}, nil
	})(message.NewMessage("1", nil))
	require.NoError(t, err)
	require.Len(t, out, 1)
}
