package forwarder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/tracing"
)

// Relay moves committed outbox rows to a broker (seed: OutboxProcessor).
// See the package documentation for its guarantees.
type Relay struct {
	ob      *Outbox
	pub     message.Publisher
	cfg     RelayConfig
	log     *slog.Logger
	id      string
	running atomic.Bool
	tracer  trace.Tracer // nil when tracing is off

	// active is true while this relay holds the outbox's lock, lastBatch the
	// last batch it published: State reads them.
	active    atomic.Bool
	lastBatch atomic.Pointer[Batch]

	// outageSince is when the current broker outage began (unix nanos), 0
	// when the broker is available; Health reads it.
	outageSince atomic.Int64
	// gaps tracks the settled offset on MySQL.
	gaps gapTracker
}

// NewRelay returns a relay publishing the rows of ob with pub. pub must
// return from Publish only once the broker confirmed the messages (eventkit
// transports do; for watermill-amqp set ConfirmDelivery). It must be safe
// for use by one goroutine at a time; the relay does not close it. See
// IsUnavailable for how the relay reads its errors.
func NewRelay(ob *Outbox, pub message.Publisher, cfg RelayConfig) (*Relay, error) {
	switch {
	case ob == nil:
		return nil, errors.New("forwarder: outbox is nil")
	case pub == nil:
		return nil, errors.New("forwarder: publisher is nil")
	}
	cfg.setDefaults(ob)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if ob.cfg.Dialect == SQLite && cfg.LeaseTTL < 2*max(cfg.PollInterval, cfg.MaxBackoff) {
		// The lease is renewed between rounds; the longest wait between
		// rounds is PollInterval or MaxBackoff.
		return nil, fmt.Errorf("forwarder: RelayConfig.LeaseTTL %v: must be at least twice max(PollInterval, MaxBackoff) (%v)",
			cfg.LeaseTTL, max(cfg.PollInterval, cfg.MaxBackoff))
	}
	id, err := events.NewID()
	if err != nil {
		return nil, fmt.Errorf("forwarder: relay id: %w", err)
	}
	return &Relay{
		ob:     ob,
		pub:    pub,
		cfg:    cfg,
		log:    cfg.Logger.With(slog.String("outbox", ob.cfg.Name), slog.String("relay", id)),
		id:     id,
		tracer: tracing.Tracer(cfg.TracerProvider),
	}, nil
}

// Run relays until ctx ends, then finishes or releases the in-flight batch
// (see RelayConfig.StopTimeout) and returns nil. Several relays may run on
// one outbox, in one process or many: one is active, the others stand by
// and take over when it stops or dies. Database and broker failures are
// logged and retried with capped backoff; they never end Run. Run returns
// ErrRelayRunning if the relay is already running; after it returned it
// may be called again.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRelayRunning
	}
	defer r.running.Store(false)
	defer r.outageSince.Store(0)
	backoff := r.cfg.RetryInterval
	standby := false
	for ctx.Err() == nil {
		l, err := r.acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			r.log.Warn("eventkit: relay cannot reach the outbox database", slogErr(err), slog.Duration("retry_in", backoff))
			sleep(ctx, backoff)
			backoff = min(2*backoff, r.cfg.MaxBackoff)
			continue
		}
		backoff = r.cfg.RetryInterval
		if l == nil {
			if !standby {
				r.log.Info("eventkit: relay standing by: another relay is active")
				standby = true
			}
			sleep(ctx, r.cfg.TakeoverInterval)
			continue
		}
		standby = false
		r.log.Info("eventkit: relay active", slog.Bool("listen", l.listen))
		r.active.Store(true)
		err = r.lead(ctx, l)
		r.active.Store(false)
		l.free()
		// An outage seen while leading is no longer this relay's to report:
		// a standby publishes nothing (the active relay, or BrokerHealth,
		// tells how the broker is). Found by the nemesis: a relay that
		// stepped down during an outage stayed unhealthy for good.
		r.outageSince.Store(0)
		if err != nil && ctx.Err() == nil {
			r.log.Warn("eventkit: relay stepped down", slogErr(err))
			sleep(ctx, r.cfg.RetryInterval)
		}
	}
	r.log.Info("eventkit: relay stopped")
	return nil
}
