package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/b2131a45/eventkit/events"
)

// Retry defaults, used for the zero value of each RetryConfig field.
const (
	RetryMaxAttemptsDefault     = 5
	RetryInitialIntervalDefault = 100 * time.Millisecond
	RetryMaxIntervalDefault     = time.Second
	RetryMultiplierDefault      = 2.0
	RetryJitterDefault          = 0.2
	RetryMaxElapsedDefault      = 10 * time.Second
)

// RetryConfig configures Retry. The zero value of every field is its
// documented default.
type RetryConfig struct {
	// MaxAttempts is the number of attempts, the first one included: 1 means
	// no retry. Defaults to RetryMaxAttemptsDefault.
	MaxAttempts int
	// InitialInterval is the delay before the first retry. Defaults to
	// RetryInitialIntervalDefault.
	InitialInterval time.Duration
	// MaxInterval caps every delay. Defaults to RetryMaxIntervalDefault.
	MaxInterval time.Duration
	// Multiplier grows the delay after each retry: delay n is
	// InitialInterval × Multiplier^(n-1), capped at MaxInterval. It must be
	// ≥ 1. Defaults to RetryMultiplierDefault.
	Multiplier float64
	// Jitter spreads each delay uniformly over ±Jitter of itself (still
	// capped at MaxInterval), so that consumers that failed together do not
	// retry together. It must be in [0, 1]; -1 disables jitter. Defaults to
	// RetryJitterDefault.
	Jitter float64
	// MaxElapsed bounds the time from the start of the first attempt after
	// which no retry starts (an attempt in progress is not cut; that is
	// Timeout's job). -1 disables the bound, leaving MaxAttempts alone.
	// Defaults to RetryMaxElapsedDefault.
	MaxElapsed time.Duration
	// Retryable reports whether an error is worth another attempt. Defaults
	// to retrying everything but permanent errors (events.IsPermanent: the
	// errors of Permanent and of package events).
	Retryable func(err error) bool
	// OnRetry, if set, is called before each retry's delay with the attempt
	// that failed, its error and the delay. Use it for metrics.
	OnRetry func(ctx context.Context, attempt int, err error, delay time.Duration)
	// Logger receives a warning for each retry. Defaults to slog.Default().
	Logger *slog.Logger
}

func (c RetryConfig) withDefaults() RetryConfig {
	if c.MaxAttempts == 0 {
		c.MaxAttempts = RetryMaxAttemptsDefault
	}
	if c.InitialInterval == 0 {
		c.InitialInterval = RetryInitialIntervalDefault
	}
	if c.MaxInterval == 0 {
		c.MaxInterval = RetryMaxIntervalDefault
	}
	if c.Multiplier == 0 {
		c.Multiplier = RetryMultiplierDefault
	}
	switch c.Jitter {
	case 0:
		c.Jitter = RetryJitterDefault
	case -1:
		c.Jitter = 0
	}
	if c.MaxElapsed == 0 {
		c.MaxElapsed = RetryMaxElapsedDefault
	}
	if c.Retryable == nil {
		c.Retryable = func(err error) bool { return !events.IsPermanent(err) }
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c RetryConfig) validate() error {
	switch {
	case c.MaxAttempts < 1:
		return fmt.Errorf("middleware: RetryConfig.MaxAttempts must be ≥ 1, got %d", c.MaxAttempts)
	case c.InitialInterval < 0:
		return fmt.Errorf("middleware: RetryConfig.InitialInterval must not be negative, got %s", c.InitialInterval)
	case c.MaxInterval < 0:
		return fmt.Errorf("middleware: RetryConfig.MaxInterval must not be negative, got %s", c.MaxInterval)
	case c.MaxInterval < c.InitialInterval:
		return fmt.Errorf("middleware: RetryConfig.MaxInterval (%s) is shorter than InitialInterval (%s)", c.MaxInterval, c.InitialInterval)
	case math.IsNaN(c.Multiplier) || c.Multiplier < 1:
		return fmt.Errorf("middleware: RetryConfig.Multiplier must be ≥ 1, got %v", c.Multiplier)
	case math.IsNaN(c.Jitter) || c.Jitter < 0 || c.Jitter > 1:
		return fmt.Errorf("middleware: RetryConfig.Jitter must be in [0, 1] or -1, got %v", c.Jitter)
	case c.MaxElapsed < 0 && c.MaxElapsed != -1:
		return fmt.Errorf("middleware: RetryConfig.MaxElapsed must be positive or -1, got %s", c.MaxElapsed)
	}
	return nil
}

// RetryError is returned by Retry when it gives up: the handler's last error
// with the number of attempts made. PoisonQueue reads it for dlq_attempts.
type RetryError struct {
	// Attempts is how many times the handler ran.
	Attempts int
	// Exhausted is true when MaxAttempts or MaxElapsed stopped the retries,
	// false when the error was not retryable.
	Exhausted bool
	// Err is the handler's last error.
	Err error
}

func (e *RetryError) Error() string {
	if e.Exhausted {
		return fmt.Sprintf("retries exhausted after %d attempt(s): %v", e.Attempts, e.Err)
	}
	return fmt.Sprintf("not retried after %d attempt(s): %v", e.Attempts, e.Err)
}

// Unwrap returns the handler's last error.
func (e *RetryError) Unwrap() error { return e.Err }

// Retry runs the handler again after a failure, with exponential backoff
// and jitter. See NewRetry.
type Retry struct {
	cfg     RetryConfig
	retries atomic.Int64
}

// NewRetry returns the Retry middleware: immediate retries, the first stage
// of recoverability. Each attempt runs with the original message context
// plus the attempt number (AttemptFromContext), so a Timeout below Retry
// gives every attempt a fresh deadline. Between attempts Retry sleeps the
// backoff delay holding the message (the stream waits: retries are
// in-process), which is why its default policy is short; longer waits are
// DelayedRetry's, which frees the consumer. It stops and returns:
//
//   - the produced messages on success;
//   - a *RetryError when the error is not retryable (Exhausted false) or
//     MaxAttempts/MaxElapsed is reached (Exhausted true);
//   - an error matching ErrInterrupted and the context's error as soon as
//     the message context ends (shutdown, rebalance): not another attempt,
//     not a dead letter, just a nack so the transport redelivers later.
//
// Messages produced by a failed attempt are dropped. NewRetry returns an
// error naming the bad field when cfg is invalid.
func NewRetry(cfg RetryConfig) (*Retry, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Retry{cfg: cfg}, nil
}

// Retries returns how many retries (attempts after the first) were started.
func (r *Retry) Retries() int64 { return r.retries.Load() }

// Config returns the configuration with defaults filled in.
func (r *Retry) Config() RetryConfig { return r.cfg }

// Middleware is the message.HandlerMiddleware.
func (r *Retry) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		base := msg.Context()
		defer msg.SetContext(base)
		start := time.Now()
		for attempt := 1; ; attempt++ {
			msg.SetContext(withAttempt(base, attempt))
			out, err := h(msg)
			if err == nil {
				return out, nil
			}
			if base.Err() != nil {
				return nil, interrupted(base, err, attempt)
			}
			if !r.cfg.Retryable(err) {
				return nil, &RetryError{Attempts: attempt, Err: err}
			}
			if attempt >= r.cfg.MaxAttempts {
				return nil, &RetryError{Attempts: attempt, Exhausted: true, Err: err}
			}
			delay := r.delay(attempt)
			if r.cfg.MaxElapsed > 0 && time.Since(start)+delay > r.cfg.MaxElapsed {
				return nil, &RetryError{Attempts: attempt, Exhausted: true, Err: err}
			}
			if r.cfg.OnRetry != nil {
				r.cfg.OnRetry(base, attempt, err, delay)
			}
			trace.SpanFromContext(base).AddEvent("retry", trace.WithAttributes(
				attribute.Int("eventkit.attempt", attempt), attribute.String("error", err.Error())))
			r.cfg.Logger.LogAttrs(base, slog.LevelWarn, "eventkit: handler failed, retrying",
				append(attrsOf(msg), slog.Int("attempt", attempt), slog.Duration("delay", delay), slog.String("error", err.Error()))...)
			if !sleep(base, delay) {
				return nil, interrupted(base, err, attempt)
			}
			r.retries.Add(1)
		}
	}
}

// delay returns the backoff before retry number n (n ≥ 1: after attempt n).
func (r *Retry) delay(n int) time.Duration {
	d := r.base(n)
	if j := r.cfg.Jitter; j > 0 {
		d *= 1 + j*(2*rand.Float64()-1)
	}
	return min(time.Duration(d), r.cfg.MaxInterval)
}

// base returns the delay before retry n without jitter, capped, as float.
func (r *Retry) base(n int) float64 {
	d := float64(r.cfg.InitialInterval) * math.Pow(r.cfg.Multiplier, float64(n-1))
	return math.Min(d, float64(r.cfg.MaxInterval))
}

// Horizon returns the longest time Retry can hold one delivery of a message
// when each attempt takes at most attemptTimeout (0: attempts taken as
// instant): the longest delays of MaxAttempts-1 retries plus the attempts,
// or MaxElapsed plus one attempt, whichever is shorter. Default checks that
// the inbox retention outlasts it.
func (r *Retry) Horizon(attemptTimeout time.Duration) time.Duration {
	attemptTimeout = max(attemptTimeout, 0)
	var total float64
	for n := 1; n < r.cfg.MaxAttempts; n++ {
		total += math.Min(r.base(n)*(1+r.cfg.Jitter), float64(r.cfg.MaxInterval))
		if total > float64(math.MaxInt64/2) {
			break
		}
	}
	total += float64(r.cfg.MaxAttempts) * float64(attemptTimeout)
	h := time.Duration(math.Min(total, float64(math.MaxInt64/2)))
	if r.cfg.MaxElapsed > 0 {
		h = min(h, r.cfg.MaxElapsed+attemptTimeout)
	}
	return h
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// attemptsOf returns the attempts recorded in err by Retry, or 1.
func attemptsOf(err error) int {
	var re *RetryError
	if errors.As(err, &re) && re.Attempts > 0 {
		return re.Attempts
	}
	var ie *interruptedError
	if errors.As(err, &ie) && ie.attempts > 0 {
		return ie.attempts
	}
	return 1
}
