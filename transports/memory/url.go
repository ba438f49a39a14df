package memory

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/b2131a45/eventkit/transports/internal/urlopt"
)

// ParseURL reads a mem:// URL into a Config. The URL has no host or path.
// Query parameters:
//
//	resend_interval   Config.ResendInterval, e.g. 50ms
//
// Any other parameter is an error.
func ParseURL(rawURL string) (Config, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return Config{}, errors.New("malformed URL")
	}
	if u.Scheme != "mem" {
		return Config{}, fmt.Errorf("scheme %q is not mem", u.Scheme)
	}
	if u.Host != "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.Opaque != "" {
		return Config{}, errors.New("mem:// takes no host, user or path")
	}
	var cfg Config
	opts := urlopt.New(u.Query())
	opts.Duration("resend_interval", &cfg.ResendInterval)
	if err := opts.Err(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}
