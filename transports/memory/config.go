package memory

import (
	"fmt"
	"time"
)

// ResendIntervalDefault is the default Config.ResendInterval.
const ResendIntervalDefault = 100 * time.Millisecond

// Config configures the memory transport. The zero value is ready to use.
type Config struct {
	// ResendInterval is how long a nacked message waits before the group
	// receives it again. Defaults to ResendIntervalDefault.
	ResendInterval time.Duration
}

func (c Config) withDefaults() Config {
	if c.ResendInterval == 0 {
		c.ResendInterval = ResendIntervalDefault
	}
	return c
}

func (c Config) validate() error {
	if c.ResendInterval < 0 {
		return fmt.Errorf("memory: Config.ResendInterval must not be negative, got %s", c.ResendInterval)
	}
	return nil
}
