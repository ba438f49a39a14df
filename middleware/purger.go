package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Purger defaults, used for the zero value of each PurgerConfig field.
const (
	PurgeIntervalDefault   = time.Minute
	PurgeBatchSizeDefault  = 1000
	PurgeMaxBatchesDefault = 100
)

// PurgerConfig configures a Purger. The zero value of every field is its
// documented default.
type PurgerConfig struct {
	// Interval is the time between purge rounds, ±10% jitter. Defaults to
	// PurgeIntervalDefault.
	Interval time.Duration
	// BatchSize is the most keys one DELETE removes. Defaults to
	// PurgeBatchSizeDefault.
	BatchSize int
	// MaxBatches is the most batches in one round; the rest waits for the
	// next round. Defaults to PurgeMaxBatchesDefault.
	MaxBatches int
	// Logger receives errors and a debug line per round. Defaults to
	// slog.Default().
	Logger *slog.Logger
}

func (c PurgerConfig) withDefaults() PurgerConfig {
	if c.Interval == 0 {
		c.Interval = PurgeIntervalDefault
	}
	if c.BatchSize == 0 {
		c.BatchSize = PurgeBatchSizeDefault
	}
	if c.MaxBatches == 0 {
		c.MaxBatches = PurgeMaxBatchesDefault
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c PurgerConfig) validate() error {
	switch {
	case c.Interval < 0:
		return fmt.Errorf("middleware: PurgerConfig.Interval must be positive, got %s", c.Interval)
	case c.BatchSize < 0:
		return fmt.Errorf("middleware: PurgerConfig.BatchSize must be positive, got %d", c.BatchSize)
	case c.MaxBatches < 0:
		return fmt.Errorf("middleware: PurgerConfig.MaxBatches must be positive, got %d", c.MaxBatches)
	}
	return nil
}

// Purger deletes inbox keys older than the store's retention, in bounded
// batches (a short DELETE each, so it never locks the table for long). It
// needs no leader: every instance of a service may run one on the same
// store, since each batch deletes only expired keys and PostgreSQL purgers
// skip each other's rows.
type Purger struct {
	store  InboxStore
	cfg    PurgerConfig
	purged atomic.Int64
}

// NewPurger returns a Purger of store. It returns an error if store is nil
// or cfg is invalid.
func NewPurger(store InboxStore, cfg PurgerConfig) (*Purger, error) {
	if store == nil {
		return nil, errors.New("middleware: Purger inbox store is nil")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Purger{store: store, cfg: cfg}, nil
}

// Purged returns how many keys the Purger deleted.
func (p *Purger) Purged() int64 { return p.purged.Load() }

// Run purges at once, then every Interval until ctx ends, and returns nil
// then. A failed round is logged and tried again at the next interval. Run
// may be called again after it returned.
func (p *Purger) Run(ctx context.Context) error {
	for {
		if _, err := p.PurgeOnce(ctx); err != nil && ctx.Err() == nil {
			p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "eventkit: inbox purge failed", slog.String("error", err.Error()))
		}
		d := time.Duration(float64(p.cfg.Interval) * (0.9 + 0.2*rand.Float64()))
		if !sleep(ctx, d) {
			return nil
		}
	}
}

// PurgeOnce runs one round: batches of BatchSize until a batch deletes
// fewer, MaxBatches is reached or ctx ends. It returns the keys deleted.
func (p *Purger) PurgeOnce(ctx context.Context) (int64, error) {
	cutoff := time.Now().Add(-p.store.Retention())
	var total int64
	for range p.cfg.MaxBatches {
		if ctx.Err() != nil {
			return total, ctx.Err()
		}
		n, err := p.store.Purge(ctx, cutoff, p.cfg.BatchSize)
		total += n
		p.purged.Add(n)
		if err != nil {
			return total, err
		}
		if n < int64(p.cfg.BatchSize) {
			break
		}
	}
	p.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "eventkit: inbox purged", slog.Int64("keys", total))
	return total, nil
}
