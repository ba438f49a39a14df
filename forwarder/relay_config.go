package forwarder

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Defaults of RelayConfig.
const (
	RelayBatchSizeDefault        = 1000
	RelayMaxAttemptsDefault      = 5
	RelayPollIntervalDefault     = time.Second
	RelayMinPollIntervalDefault  = 10 * time.Millisecond
	RelayRetryIntervalDefault    = 100 * time.Millisecond
	RelayMaxBackoffDefault       = 10 * time.Second
	RelayTakeoverIntervalDefault = time.Second
	RelayLeaseTTLDefault         = 30 * time.Second
	RelayStopTimeoutDefault      = 10 * time.Second
	RelayGapTimeoutDefault       = time.Second
)

// RelayConfig configures a Relay. The zero value of every field is its
// documented default.
type RelayConfig struct {
	// BatchSize is how many rows the relay reads, publishes and marks at
	// a time. Defaults to RelayBatchSizeDefault; at most 10,000.
	BatchSize int
	// MaxAttempts is how many times the broker may reject a row before it
	// is parked as failed. Outages and back-pressure never count. Defaults
	// to RelayMaxAttemptsDefault.
	MaxAttempts int
	// PollInterval is the longest wait between two reads of an idle outbox.
	// On PostgreSQL with pgx, LISTEN/NOTIFY wakes the relay on commit and
	// this poll is only the safety net. Defaults to RelayPollIntervalDefault.
	PollInterval time.Duration
	// MinPollInterval is the wait after a read that found rows, when nothing
	// wakes the relay (MySQL, SQLite, PostgreSQL without pgx); it doubles on
	// each empty read up to PollInterval. Defaults to
	// RelayMinPollIntervalDefault.
	MinPollInterval time.Duration
	// RetryInterval is the wait before publishing a rejected row again; it
	// doubles with each attempt up to MaxBackoff. It is also the first wait
	// of an outage. Defaults to RelayRetryIntervalDefault.
	RetryInterval time.Duration
	// MaxBackoff caps the waits after rejections and during an outage.
	// Defaults to RelayMaxBackoffDefault.
	MaxBackoff time.Duration
	// TakeoverInterval is how often a standby relay tries to become the
	// active one. Defaults to RelayTakeoverIntervalDefault.
	TakeoverInterval time.Duration
	// LeaseTTL is how long the SQLite lease of the active relay lasts
	// without renewal: a relay that dies is replaced after at most this.
	// Unused on PostgreSQL and MySQL, whose locks die with the connection.
	// Defaults to RelayLeaseTTLDefault; on SQLite it must be at least twice
	// the longer of PollInterval and MaxBackoff.
	LeaseTTL time.Duration
	// StopTimeout bounds how long Run goes on after ctx ends, to finish the
	// in-flight batch: the publish in progress gets this long to be
	// confirmed (its messages' context is cancelled then), and the rows
	// confirmed by then are marked. Defaults to RelayStopTimeoutDefault.
	StopTimeout time.Duration
	// GapTimeout (MySQL) is how long the relay waits for a missing
	// offset before the rows after it: an AUTO_INCREMENT offset is taken
	// before its row is in the index, so rows after a gap wait until the
	// gap fills (an insert in flight) or GapTimeout passes (a rolled-back
	// insert, which never fills; each one delays the relay this long once).
	// Unused on PostgreSQL and SQLite. Defaults to RelayGapTimeoutDefault.
	GapTimeout time.Duration
	// Unavailable reports whether a Publish error means the broker is
	// unavailable (retry later, no attempt counted). Defaults to
	// IsUnavailable.
	Unavailable func(error) bool
	// Logger receives the relay's logs. Defaults to the outbox's logger.
	Logger *slog.Logger
	// TracerProvider traces publishes: one producer "send" span per publish
	// call, linked to the "create" spans of its events. Defaults to the
	// outbox's OutboxConfig.TracerProvider (nil: off).
	TracerProvider trace.TracerProvider
	// MessagingSystem is the messaging.system attribute of the spans.
	// Defaults to the outbox's OutboxConfig.MessagingSystem.
	MessagingSystem string
	// Observer receives batch sizes, publish outcomes and latencies and
	// parked rows, for metrics (a *metrics.Metrics). Defaults to nil
	// (none).
	Observer RelayObserver
	// HealthMaxLag makes Health fail when the oldest pending event has
	// waited longer than this. Defaults to 0: lag not checked.
	HealthMaxLag time.Duration
	// BrokerHealth, if set, is checked by Health too, so that a broker lost
	// while the outbox is idle shows. transports.Transport.Health fits.
	// Defaults to nil: Health knows the broker only from the last publish.
	BrokerHealth func(ctx context.Context) error
}

func (c *RelayConfig) setDefaults(ob *Outbox) {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.BatchSize == 0 {
		c.BatchSize = RelayBatchSizeDefault
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = RelayMaxAttemptsDefault
	}
	def(&c.PollInterval, RelayPollIntervalDefault)
	def(&c.MinPollInterval, min(RelayMinPollIntervalDefault, c.PollInterval))
	def(&c.RetryInterval, RelayRetryIntervalDefault)
	def(&c.MaxBackoff, max(RelayMaxBackoffDefault, c.RetryInterval))
	def(&c.TakeoverInterval, RelayTakeoverIntervalDefault)
	def(&c.LeaseTTL, RelayLeaseTTLDefault)
	def(&c.StopTimeout, RelayStopTimeoutDefault)
	def(&c.GapTimeout, RelayGapTimeoutDefault)
	if c.Unavailable == nil {
		c.Unavailable = IsUnavailable
	}
	if c.Logger == nil {
		c.Logger = ob.cfg.Logger
	}
	if c.TracerProvider == nil {
		c.TracerProvider = ob.cfg.TracerProvider
	}
	if c.MessagingSystem == "" {
		c.MessagingSystem = ob.cfg.MessagingSystem
	}
}

func (c RelayConfig) validate() error {
	bad := func(field string, why string, v any) error {
		return fmt.Errorf("forwarder: RelayConfig.%s %v: %s", field, v, why)
	}
	switch {
	case c.BatchSize < 1 || c.BatchSize > 10000:
		return bad("BatchSize", "want 1 to 10000", c.BatchSize)
	case c.MaxAttempts < 1:
		return bad("MaxAttempts", "must be at least 1", c.MaxAttempts)
	case c.PollInterval < 0:
		return bad("PollInterval", "is negative", c.PollInterval)
	case c.MinPollInterval < 0 || c.MinPollInterval > c.PollInterval:
		return bad("MinPollInterval", fmt.Sprintf("want 0 to PollInterval (%v)", c.PollInterval), c.MinPollInterval)
	case c.RetryInterval < 0:
		return bad("RetryInterval", "is negative", c.RetryInterval)
	case c.MaxBackoff < c.RetryInterval:
		return bad("MaxBackoff", fmt.Sprintf("is below RetryInterval (%v)", c.RetryInterval), c.MaxBackoff)
	case c.TakeoverInterval < 0:
		return bad("TakeoverInterval", "is negative", c.TakeoverInterval)
	case c.StopTimeout < 0:
		return bad("StopTimeout", "is negative", c.StopTimeout)
	case c.GapTimeout < 0:
		return bad("GapTimeout", "is negative", c.GapTimeout)
	case c.HealthMaxLag < 0:
		return bad("HealthMaxLag", "is negative", c.HealthMaxLag)
	}
	return nil
}
