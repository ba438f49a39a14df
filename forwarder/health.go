package forwarder

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Health errors. Relay.Health wraps them with details; test with errors.Is.
var (
	// ErrRelayNotRunning: Run is not in progress.
	ErrRelayNotRunning = errors.New("forwarder: relay is not running")
	// ErrBrokerUnavailable: the active relay's last publish found the broker
	// unavailable (an outage or back-pressure in progress).
	ErrBrokerUnavailable = errors.New("forwarder: broker unavailable")
	// ErrDatabaseUnreachable: the outbox database did not answer.
	ErrDatabaseUnreachable = errors.New("forwarder: outbox database unreachable")
	// ErrLagTooHigh: the oldest pending event waits longer than
	// RelayConfig.HealthMaxLag.
	ErrLagTooHigh = errors.New("forwarder: outbox lag too high")
)

// Lag returns how long the oldest pending row of the outbox has waited
// (Stats.OldestPendingAge), 0 when none is pending. Unlike Stats it reads one
// row through an index, so it is cheap enough for health checks.
func (o *Outbox) Lag(ctx context.Context) (time.Duration, error) {
	var args []any
	if o.cfg.Dialect == SQLite {
		args = append(args, time.Now().UnixMicro())
	}
	var micros sql.NullInt64
	err := scanOne(ctx, o.db, []any{&micros}, o.s.oldestPending(), args...)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("forwarder: lag of outbox %s: %w", o.cfg.Name, err)
	}
	return max(time.Duration(micros.Int64)*time.Microsecond, 0), nil
}

// Health reports whether the relay is doing its job, for a health endpoint
// (see package health). It returns nil when Run is in progress, the outbox
// database answers, the broker was available at the active relay's last
// publish and to RelayConfig.BrokerHealth (when set), and the lag (Outbox.Lag) is at most RelayConfig.HealthMaxLag
// (when set). Otherwise it returns the failed checks joined, each wrapping
// ErrRelayNotRunning, ErrDatabaseUnreachable, ErrBrokerUnavailable or
// ErrLagTooHigh. A standby relay (another one is active) is healthy when
// the database answers and the lag is under the threshold.
func (r *Relay) Health(ctx context.Context) error {
	var errs []error
	if !r.running.Load() {
		errs = append(errs, ErrRelayNotRunning)
	}
	if since := r.outageSince.Load(); since != 0 {
		errs = append(errs, fmt.Errorf("%w for %s", ErrBrokerUnavailable, time.Since(time.Unix(0, since)).Round(time.Millisecond)))
	}
	if r.cfg.BrokerHealth != nil {
		if err := r.cfg.BrokerHealth(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", ErrBrokerUnavailable, err))
		}
	}
	lag, err := r.ob.Lag(ctx)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("%w: %w", ErrDatabaseUnreachable, err))
	case r.cfg.HealthMaxLag > 0 && lag > r.cfg.HealthMaxLag:
		errs = append(errs, fmt.Errorf("%w: oldest pending event waits %s (threshold %s)", ErrLagTooHigh, lag.Round(time.Millisecond), r.cfg.HealthMaxLag))
	}
	return errors.Join(errs...)
}
