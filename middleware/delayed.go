package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/tracing"
)

// Metadata of a message handed back by DelayedRetry. They are stable API.
const (
	// KeyDelayedAttempts counts the delayed rounds a message has been
	// through, in decimal: 1 after the first delay.
	KeyDelayedAttempts = "delayed_attempts"
	// KeyDelayedGroup is the consumer group (router handler) the message
	// was handed back to.
	KeyDelayedGroup = "delayed_group"
	// KeyDelayedError is the error that sent the message into its last
	// delay, at most MaxErrorBytes long.
	KeyDelayedError = "delayed_error"
	// KeyDeadLetterDelayedAttempts is the dead letter's count of delayed
	// rounds (KeyDelayedAttempts when it was dead-lettered).
	KeyDeadLetterDelayedAttempts = "dlq_delayed_attempts"
)

// DelayedRetryLevelsDefault are the delays of the default delayed rounds,
// NServiceBus's: 10 s, then 20 s, then 30 s.
var DelayedRetryLevelsDefault = []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second}

// MaxDelay is the longest delay of a level (NServiceBus caps its own at a
// day too); a longer wait belongs in a scheduler, not a retry.
const MaxDelay = 24 * time.Hour

// Delayer hands messages back to one consumer group later. The publishers of
// eventkit's transports implement it (transports.Transport.Publisher()):
// RabbitMQ with per-level delay queues that dead-letter into the group's own
// queue, Kafka with per-group retry topics, SQL with a delayed table per
// group, memory with a due time.
type Delayer interface {
	// Delay makes msgs come back, no earlier than after d and as close to
	// it as the transport can, to the consumer group group subscribed to
	// topic, and to no other group; level (from 1) is the delayed round
	// they are in. It returns once the transport holds them as durably as
	// it holds any message (a Publish that returned nil).
	Delay(topic, group string, level int, d time.Duration, msgs ...*message.Message) error
	// DelayLevels is the most levels the transport brings back (Kafka
	// consumes that many retry topics per group); 0 means no limit.
	DelayLevels() int
}

// DelayObserver is the optional part of an Observer that counts delayed
// retries. Package metrics implements it.
type DelayObserver interface {
	// Delayed is called for every message handed to a delay level.
	Delayed(ctx context.Context, level int)
}

// DelayedRetryConfig configures DelayedRetry. The zero value of every field
// is its documented default.
type DelayedRetryConfig struct {
	// Levels are the delays of the delayed rounds, shortest first, each
	// longer than the one before, at most MaxDelay. Defaults to
	// DelayedRetryLevelsDefault (3 rounds: 10 s, 20 s, 30 s).
	Levels []time.Duration
	// Disabled turns delayed retries off: a message whose immediate
	// retries are spent is dead-lettered at once. Defaults to false.
	Disabled bool
	// Retryable reports whether an error is worth a delayed round.
	// Defaults to retrying everything but permanent errors
	// (events.IsPermanent).
	Retryable func(err error) bool
	// OnDelay, if set, is called after each message was handed to a delay
	// level. Use it for metrics.
	OnDelay func(ctx context.Context, level int, d time.Duration)
	// Logger receives a warning per delayed message. Defaults to
	// slog.Default().
	Logger *slog.Logger
}

func (c DelayedRetryConfig) withDefaults() DelayedRetryConfig {
	if c.Levels == nil {
		c.Levels = DelayedRetryLevelsDefault
	}
	if c.Retryable == nil {
		c.Retryable = func(err error) bool { return !events.IsPermanent(err) }
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c DelayedRetryConfig) validate() error {
	if c.Disabled {
		return nil
	}
	if len(c.Levels) == 0 {
		return errors.New("middleware: DelayedRetryConfig.Levels is empty: set Disabled to turn delayed retries off")
	}
	for i, d := range c.Levels {
		switch {
		case d <= 0:
			return fmt.Errorf("middleware: DelayedRetryConfig.Levels[%d] is %s: a delay must be positive", i, d)
		case d > MaxDelay:
			return fmt.Errorf("middleware: DelayedRetryConfig.Levels[%d] is %s, longer than MaxDelay (%s)", i, d, MaxDelay)
		case i > 0 && d <= c.Levels[i-1]:
			return fmt.Errorf("middleware: DelayedRetryConfig.Levels must increase: Levels[%d] = %s is not longer than Levels[%d] = %s",
				i, d, i-1, c.Levels[i-1])
		}
	}
	return nil
}

// DelayedRetry is the second stage of recoverability. See NewDelayedRetry.
type DelayedRetry struct {
	delayer Delayer
	cfg     DelayedRetryConfig
	delayed atomic.Int64
}

// NewDelayedRetry returns the DelayedRetry middleware. It goes between
// PoisonQueue and Retry (Default puts it there). When the handlers below it
// fail with a retryable error after their immediate retries (a *RetryError
// with Exhausted set), and the message has been through fewer delayed rounds
// than there are Levels, it:
//
//   - hands a copy to d.Delay for its topic and consumer group (from
//     message.SubscribeTopicFromCtx and message.HandlerNameFromCtx), with
//     the same UUID (the event id), payload and metadata (the envelope,
//     correlation and causation) plus KeyDelayedAttempts, KeyDelayedGroup
//     and KeyDelayedError; with tracing on, its trace context is the
//     current span's, so the next delivery continues the same trace;
//   - then acks the original, so its consumer goes on at once.
//
// When the copy comes back, to that group only, the message runs through the
// chain again, immediate retries included. After the last level, or for an
// error that is not retryable, the error goes up to PoisonQueue, which
// dead-letters the message with dlq_attempts and dlq_delayed_attempts. A
// failed Delay is returned joined with the error, so the message is nacked
// (never lost). Shutdown (ErrInterrupted) is passed on, never delayed.
//
// The inbox is untouched by failed attempts (Deduplicate rolls them back),
// so the returning message is not a duplicate.
//
// It returns an error when d is nil (unless cfg.Disabled) or cfg is
// invalid, and when the transport brings back fewer levels than
// cfg.Levels has (Delayer.DelayLevels).
func NewDelayedRetry(d Delayer, cfg DelayedRetryConfig) (*DelayedRetry, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Disabled {
		return &DelayedRetry{cfg: cfg}, nil
	}
	if d == nil {
		return nil, errors.New("middleware: DelayedRetry needs a Delayer (an eventkit transport's publisher); set DelayedRetryConfig.Disabled to go without")
	}
	if n := d.DelayLevels(); n > 0 && len(cfg.Levels) > n {
		return nil, fmt.Errorf("middleware: DelayedRetryConfig.Levels has %d levels but the transport brings back %d (on Kafka: raise kafka.Config.DelayLevels, URL delay_levels)",
			len(cfg.Levels), n)
	}
	return &DelayedRetry{delayer: d, cfg: cfg}, nil
}

// Delayed returns how many messages were handed to a delay level.
func (r *DelayedRetry) Delayed() int64 { return r.delayed.Load() }

// Config returns the configuration with defaults filled in.
func (r *DelayedRetry) Config() DelayedRetryConfig { return r.cfg }

// Horizon is the longest time an event can spend in delayed rounds: the sum
// of the levels (0 when disabled). Each round also holds the event for the
// immediate retries' horizon, which Default adds.
func (r *DelayedRetry) Horizon() time.Duration {
	if r.cfg.Disabled {
		return 0
	}
	var h time.Duration
	for _, d := range r.cfg.Levels {
		h += d
	}
	return h
}

// DelayedAttemptsOf returns the delayed rounds msg has been through
// (KeyDelayedAttempts), 0 when none. A value that is not a count, or an
// events.KeyDeliverAt that is not a time, is a permanent error, which
// Middleware dead-letters (ReasonPermanent, the header named).
func DelayedAttemptsOf(msg *message.Message) (int, error) {
	if v := msg.Metadata.Get(events.KeyDeliverAt); v != "" {
		if _, err := events.ParseTime(v); err != nil {
			return 0, Permanent(fmt.Errorf("middleware: header %q: %w", events.KeyDeliverAt, err))
		}
	}
	v := msg.Metadata.Get(KeyDelayedAttempts)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, Permanent(fmt.Errorf("middleware: header %q is %q, not a count of delayed rounds", KeyDelayedAttempts, v))
	}
	return n, nil
}

// Middleware is the message.HandlerMiddleware.
func (r *DelayedRetry) Middleware(h message.HandlerFunc) message.HandlerFunc {
	if r.cfg.Disabled {
		return h
	}
	return func(msg *message.Message) ([]*message.Message, error) {
		ctx := msg.Context()
		done, err := DelayedAttemptsOf(msg)
		if err != nil {
			return nil, err
		}
		out, err := h(msg)
		msg.SetContext(ctx)
		if err == nil {
			return out, nil
		}
		var re *RetryError
		if isInterrupted(ctx, err) || !errors.As(err, &re) || !re.Exhausted || !r.cfg.Retryable(err) || done >= len(r.cfg.Levels) {
			return nil, err
		}
		level := done + 1
		delay := r.cfg.Levels[done]
		if dErr := r.delay(ctx, msg, level, delay, err); dErr != nil {
			var u interface{ Unavailable() bool }
			transient := errors.As(dErr, &u) && u.Unavailable()
			r.cfg.Logger.LogAttrs(ctx, slog.LevelError, "eventkit: cannot delay message, nacking it",
				append(attrsOf(msg), slog.String("error", err.Error()), slog.String("delay_error", dErr.Error()))...)
			return nil, errors.Join(err, &DelayError{Err: dErr, Transient: transient})
		}
		return nil, nil
	}
}

func (r *DelayedRetry) delay(ctx context.Context, msg *message.Message, level int, d time.Duration, cause error) error {
	topic := message.SubscribeTopicFromCtx(ctx)
	group := message.HandlerNameFromCtx(ctx)
	if topic == "" || group == "" {
		return fmt.Errorf("middleware: DelayedRetry: message has no subscribe topic or handler (not in a router handler?)")
	}
	cp := message.NewMessage(msg.UUID, msg.Payload)
	for k, v := range msg.Metadata {
		cp.Metadata[k] = v
	}
	cp.Metadata[KeyDelayedAttempts] = strconv.Itoa(level)
	cp.Metadata[KeyDelayedGroup] = group
	cp.Metadata[KeyDelayedError] = truncate(cause.Error(), MaxErrorBytes)
	if trace.SpanContextFromContext(ctx).IsValid() {
		// The next delivery is a child of this one: one trace from the
		// first attempt to the last, with or without a producer's trace.
		tracing.Inject(ctx, cp)
	}
	cp.SetContext(context.WithoutCancel(ctx))
	if err := r.delayer.Delay(topic, group, level, d, cp); err != nil {
		return fmt.Errorf("middleware: delay message %s by %s (level %d): %w", msg.UUID, d, level, err)
	}
	r.delayed.Add(1)
	if r.cfg.OnDelay != nil {
		r.cfg.OnDelay(ctx, level, d)
	}
	trace.SpanFromContext(ctx).AddEvent("delayed retry", trace.WithAttributes(
		attribute.Int("eventkit.delay_level", level), attribute.String("eventkit.delay", d.String()), attribute.String("error", cause.Error())))
	r.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "eventkit: handler failed after its immediate retries, delaying",
		append(attrsOf(msg), slog.Int("level", level), slog.Duration("delay", d), slog.String("error", cause.Error()))...)
	return nil
}

// DelayError wraps the error of a failed delay publish (DelayedRetry). It
// is joined with the handler's error. When Transient (the transport said
// it is unavailable: a lost connection, an unconfirmed publish), PoisonQueue
// does not dead-letter the message but returns the error, so that it is
// nacked and comes back once the broker does: a broker fault at the moment
// a retry is delayed is no reason to dead-letter. Otherwise (the delay
// cannot work: a queue name too long, say) the message is dead-lettered
// with both errors, never redelivered in a loop. Found by the nemesis.
type DelayError struct {
	Err       error
	Transient bool
}

func (e *DelayError) Error() string { return "middleware: delay: " + e.Err.Error() }

func (e *DelayError) Unwrap() error { return e.Err }
