package cqrs

import (
	"context"
	"errors"
	"fmt"
)

// Health errors. Processor.Health wraps them; test with errors.Is.
var (
	// ErrNotRunning: the processor's router is not running (not started
	// yet, or closed).
	ErrNotRunning = errors.New("cqrs: router is not running")
	// ErrBrokerUnavailable: ProcessorConfig.BrokerHealth failed.
	ErrBrokerUnavailable = errors.New("cqrs: broker unavailable")
)

// Health reports whether the processor consumes: its router is running and
// ProcessorConfig.BrokerHealth (when set) passes. Otherwise it returns the
// failed checks joined, wrapping ErrNotRunning or ErrBrokerUnavailable. Use
// it behind a health endpoint (see package health).
func (p *Processor) Health(ctx context.Context) error {
	var errs []error
	if !p.router.IsRunning() || p.router.IsClosed() {
		errs = append(errs, ErrNotRunning)
	}
	if p.brokerHealth != nil {
		if err := p.brokerHealth(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", ErrBrokerUnavailable, err))
		}
	}
	return errors.Join(errs...)
}
