package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace"
)

// RedeliveryMarginDefault is the default DefaultConfig.RedeliveryMargin.
const RedeliveryMarginDefault = time.Hour

// DefaultConfig configures the chain Default returns. Publisher and Inbox
// are required; the zero value of every other field is its documented
// default.
type DefaultConfig struct {
	// Publisher publishes dead letters. Required.
	Publisher message.Publisher
	// Inbox records handled events. Required: a SQLInbox in production, a
	// MemoryInbox in tests.
	Inbox InboxStore
	// InTx runs handlers inside the inbox transaction (DeduplicateConfig.InTx).
	InTx bool
	// Subscribers initialises dead-letter topics for DeadLetterGroup
	// (PoisonQueueConfig.Subscribers); set it on AMQP.
	Subscribers SubscriberFactory
	// DeadLetterGroup is PoisonQueueConfig.Group. Defaults to
	// DeadLetterGroupDefault.
	DeadLetterGroup string
	// DeadLetterTopic is PoisonQueueConfig.Topic. Defaults to
	// DeadLetterTopic (topic + ".dlq").
	DeadLetterTopic func(topic string) string
	// Retry is the policy of the immediate retries, the first stage; its
	// zero value is the default policy (short: up to 5 attempts within
	// 10 s, holding the message).
	Retry RetryConfig
	// DelayedRetry is the second stage: once the immediate retries are
	// spent on a retryable error, the message is handed to the transport's
	// delay and acked, and comes back to the same handler after each level
	// (default 10 s, 20 s, 30 s), before it is dead-lettered. Its zero value
	// is the default policy; DelayedRetryConfig.Disabled turns it off.
	DelayedRetry DelayedRetryConfig
	// Delayer delays messages for DelayedRetry. Defaults to Publisher,
	// which every eventkit transport's publisher is (Default fails when it
	// is not one and DelayedRetry is not disabled).
	Delayer Delayer
	// Timeout bounds each attempt. Defaults to TimeoutDefault; -1 disables
	// it.
	Timeout time.Duration
	// RedeliveryMargin is how much longer than the retry horizon the inbox
	// must remember handled events, to cover redeliveries after a crash or a
	// rebalance and replays. Defaults to RedeliveryMarginDefault; -1 means
	// none.
	RedeliveryMargin time.Duration
	// Logger is used by every middleware of the chain whose own config has
	// no logger, and is the base of LoggerFromContext. Defaults to
	// slog.Default().
	Logger *slog.Logger
	// TracerProvider turns on tracing: the chain starts with a Tracing
	// middleware (a consumer span per delivery, continuing the producer's
	// trace from the message metadata). Defaults to nil: tracing off.
	TracerProvider trace.TracerProvider
	// MessagingSystem is TracingConfig.MessagingSystem.
	MessagingSystem string
	// Observer receives the chain's measurements (handler durations and
	// errors, retries, dead letters, duplicates) for metrics: Default
	// wires it into Retry, PoisonQueue and Deduplicate and adds Measure
	// around the handler. Defaults to nil (none).
	Observer Observer
}

func (c DefaultConfig) withDefaults() DefaultConfig {
	if c.Timeout == 0 {
		c.Timeout = TimeoutDefault
	}
	if c.RedeliveryMargin == 0 {
		c.RedeliveryMargin = RedeliveryMarginDefault
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Retry.Logger == nil {
		c.Retry.Logger = c.Logger
	}
	if c.DelayedRetry.Logger == nil {
		c.DelayedRetry.Logger = c.Logger
	}
	if c.Delayer == nil {
		c.Delayer, _ = c.Publisher.(Delayer)
	}
	if obs := c.Observer; obs != nil {
		onRetry := c.Retry.OnRetry
		c.Retry.OnRetry = func(ctx context.Context, attempt int, err error, delay time.Duration) {
			if onRetry != nil {
				onRetry(ctx, attempt, err, delay)
			}
			obs.Retried(ctx, attempt)
		}
		if do, ok := obs.(DelayObserver); ok {
			onDelay := c.DelayedRetry.OnDelay
			c.DelayedRetry.OnDelay = func(ctx context.Context, level int, d time.Duration) {
				if onDelay != nil {
					onDelay(ctx, level, d)
				}
				do.Delayed(ctx, level)
			}
		}
	}
	return c
}

func (c DefaultConfig) validate() error {
	switch {
	case c.Publisher == nil:
		return errors.New("middleware: DefaultConfig.Publisher is required (dead letters are published with it)")
	case c.Inbox == nil:
		return errors.New("middleware: DefaultConfig.Inbox is required")
	case c.Timeout < 0 && c.Timeout != -1:
		return fmt.Errorf("middleware: DefaultConfig.Timeout must be positive or -1, got %s", c.Timeout)
	case c.RedeliveryMargin < 0 && c.RedeliveryMargin != -1:
		return fmt.Errorf("middleware: DefaultConfig.RedeliveryMargin must be positive or -1, got %s", c.RedeliveryMargin)
	}
	return nil
}

// Chain is the middleware chain of Default, with each part exposed for its
// counters.
type Chain struct {
	Correlation  *Correlation
	PoisonQueue  *PoisonQueue
	DelayedRetry *DelayedRetry
	Retry        *Retry
	Deduplicate  *Deduplicate
	// Tracing is nil when DefaultConfig.TracerProvider is not set.
	Tracing *Tracing

	timeout  time.Duration
	observer Observer
}

// Default returns the recommended consumer chain, validated. Add it with
// router.AddMiddleware(chain.Middlewares()...) (or to one handler). The
// order, outermost first, is
//
//	Recover → Correlation → PoisonQueue → DelayedRetry → Retry → Timeout → Deduplicate → Recover → handler
//
// and it matters (watermill#645): PoisonQueue wraps both retry stages, so a
// message is dead-lettered only after the immediate retries (Retry) and the
// delayed rounds (DelayedRetry, which frees the consumer while the message
// waits) are spent; Timeout sits below Retry, so
// each attempt has its own deadline; Deduplicate is below both, so each
// attempt claims the inbox afresh and a failed attempt leaves no key; the
// inner Recover turns a handler panic into an error that is rolled back,
// retried and dead-lettered with ReasonPanic; the outer Recover turns a
// panic in the chain itself into a nack.
//
// Default fails, naming the field, when a part's config is invalid, when
// DelayedRetry is on and there is no Delayer (or the transport brings back
// fewer levels), and when the inbox would forget an event before its
// redeliveries can end: Inbox.Retention() must be at least the retry
// horizon (the immediate retries' Retry.Horizon with Timeout in each of the
// 1 + len(Levels) rounds, plus the delays) plus RedeliveryMargin.
func Default(cfg DefaultConfig) (*Chain, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	corr, err := NewCorrelation(CorrelationConfig{Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	pqCfg := PoisonQueueConfig{
		Topic:       cfg.DeadLetterTopic,
		Subscribers: cfg.Subscribers,
		Group:       cfg.DeadLetterGroup,
		Logger:      cfg.Logger,
	}
	dedupCfg := DeduplicateConfig{InTx: cfg.InTx, Logger: cfg.Logger}
	if cfg.Observer != nil {
		pqCfg.OnDeadLetter = cfg.Observer.DeadLettered
		dedupCfg.OnDuplicate = cfg.Observer.Duplicate
	}
	var tr *Tracing
	if cfg.TracerProvider != nil {
		if tr, err = NewTracing(TracingConfig{TracerProvider: cfg.TracerProvider, MessagingSystem: cfg.MessagingSystem}); err != nil {
			return nil, err
		}
	}
	pq, err := NewPoisonQueue(cfg.Publisher, pqCfg)
	if err != nil {
		return nil, err
	}
	retry, err := NewRetry(cfg.Retry)
	if err != nil {
		return nil, err
	}
	delayed, err := NewDelayedRetry(cfg.Delayer, cfg.DelayedRetry)
	if err != nil {
		if cfg.Delayer == nil && !cfg.DelayedRetry.Disabled {
			return nil, fmt.Errorf("middleware: DefaultConfig.Publisher %T cannot delay messages for DelayedRetry: use an eventkit transport's publisher, set DefaultConfig.Delayer, or set DelayedRetry.Disabled", cfg.Publisher)
		}
		return nil, err
	}
	dedup, err := NewDeduplicate(cfg.Inbox, dedupCfg)
	if err != nil {
		return nil, err
	}
	timeout := max(cfg.Timeout, 0)
	margin := max(cfg.RedeliveryMargin, 0)
	rounds := 1
	if !delayed.Config().Disabled {
		rounds += len(delayed.Config().Levels)
	}
	horizon := time.Duration(rounds)*retry.Horizon(timeout) + delayed.Horizon()
	if need := horizon + margin; cfg.Inbox.Retention() < need {
		return nil, fmt.Errorf("middleware: inbox retention %s is shorter than the retry horizon %s plus DefaultConfig.RedeliveryMargin %s: "+
			"a redelivered event could be handled twice; raise InboxConfig.Retention to at least %s or shorten the retry policy",
			cfg.Inbox.Retention(), horizon, margin, need)
	}
	return &Chain{Correlation: corr, PoisonQueue: pq, DelayedRetry: delayed, Retry: retry, Deduplicate: dedup, Tracing: tr,
		timeout: timeout, observer: cfg.Observer}, nil
}

// Middlewares returns the chain, outermost first, for router.AddMiddleware
// or Handler.AddMiddleware.
//
// With DefaultConfig.TracerProvider, Tracing comes right after the outer
// Recover; with DefaultConfig.Observer, Measure comes right before the inner
// Recover.
func (c *Chain) Middlewares() []message.HandlerMiddleware {
	mws := make([]message.HandlerMiddleware, 0, 10)
	mws = append(mws, Recover)
	if c.Tracing != nil {
		mws = append(mws, c.Tracing.Middleware)
	}
	mws = append(mws,
		c.Correlation.Middleware,
		c.PoisonQueue.Middleware,
		c.DelayedRetry.Middleware,
		c.Retry.Middleware,
		Timeout(c.timeout),
		c.Deduplicate.Middleware,
	)
	if c.observer != nil {
		mws = append(mws, Measure(c.observer))
	}
	return append(mws, Recover)
}

// Duplicates returns how many duplicates the chain dropped.
func (c *Chain) Duplicates() int64 { return c.Deduplicate.Duplicates() }

// DeadLettered returns how many messages the chain dead-lettered.
func (c *Chain) DeadLettered() int64 { return c.PoisonQueue.DeadLettered() }
