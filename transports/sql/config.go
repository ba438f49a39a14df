package sql

import (
	"fmt"
	"log/slog"
	"regexp"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
)

// Dialect is the database family.
type Dialect string

const (
	Postgres Dialect = "postgres"
	MySQL    Dialect = "mysql"
)

// Defaults of Config.
const (
	PollIntervalDefault   = 100 * time.Millisecond
	ResendIntervalDefault = 100 * time.Millisecond
	AckDeadlineDefault    = 30 * time.Second
	BatchSizeDefault      = 100
)

// Config configures the SQL transport. Only Dialect is required; every
// other zero value means the documented default.
type Config struct {
	// Dialect of the database: Postgres or MySQL (also for MariaDB).
	// Required.
	Dialect Dialect

	// PollInterval is how long an idle subscription waits before it looks
	// for new rows again. Defaults to PollIntervalDefault.
	PollInterval time.Duration

	// ResendInterval is how long a nacked message waits before it is
	// delivered again. Defaults to ResendIntervalDefault.
	ResendInterval time.Duration

	// AckDeadline is how long a subscription waits for the ack of one
	// message before it gives up on the batch, which is then read again.
	// Defaults to AckDeadlineDefault.
	AckDeadline time.Duration

	// BatchSize is how many rows a subscription reads per transaction.
	// Defaults to BatchSizeDefault.
	BatchSize int

	// DelayTable is the table that holds the messages delayed for a
	// consumer group (Publisher.Delay: middleware.DelayedRetry), of every
	// topic, each with its due time; created when first needed. Defaults
	// to DelayTableDefault.
	DelayTable string

	// Logger receives the subscribers' events (watermill-sql's log) and the
	// MySQL driver's messages. Passwords are masked. Defaults to
	// discarding.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.PollInterval == 0 {
		c.PollInterval = PollIntervalDefault
	}
	if c.ResendInterval == 0 {
		c.ResendInterval = ResendIntervalDefault
	}
	if c.AckDeadline == 0 {
		c.AckDeadline = AckDeadlineDefault
	}
	if c.BatchSize == 0 {
		c.BatchSize = BatchSizeDefault
	}
	if c.DelayTable == "" {
		c.DelayTable = DelayTableDefault
	}
	return c
}

func (c Config) validate() error {
	if c.Dialect != Postgres && c.Dialect != MySQL {
		return fmt.Errorf("sql: Config.Dialect must be %q or %q, got %q", Postgres, MySQL, c.Dialect)
	}
	for name, d := range map[string]time.Duration{
		"PollInterval":   c.PollInterval,
		"ResendInterval": c.ResendInterval,
		"AckDeadline":    c.AckDeadline,
	} {
		if d < 0 {
			return fmt.Errorf("sql: Config.%s must not be negative, got %s", name, d)
		}
	}
	if c.DelayTable != "" && !validTable.MatchString(c.DelayTable) {
		return fmt.Errorf("sql: Config.DelayTable %q: want 1-63 of a-z 0-9 _, starting with a letter", c.DelayTable)
	}
	if c.BatchSize < 0 {
		return fmt.Errorf("sql: Config.BatchSize must not be negative, got %d", c.BatchSize)
	}
	return nil
}

var validTable = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// adapters returns watermill-sql's default schema and offsets adapter of
// the dialect, with byte payloads. c must have its defaults.
func (c Config) adapters() (wmsql.SchemaAdapter, wmsql.OffsetsAdapter) {
	if c.Dialect == Postgres {
		return wmsql.DefaultPostgreSQLSchema{
			GeneratePayloadType: func(string) string { return "BYTEA" },
			SubscribeBatchSize:  c.BatchSize,
		}, wmsql.DefaultPostgreSQLOffsetsAdapter{}
	}
	return wmsql.DefaultMySQLSchema{
		GeneratePayloadType: func(string) string { return "LONGBLOB" },
		SubscribeBatchSize:  c.BatchSize,
	}, wmsql.DefaultMySQLOffsetsAdapter{}
}
