package console

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// TokenEnv is the environment variable the programs that serve the console
// (eventkit console, examples/demo) read the operator token from: better
// than a flag, which ps shows.
const TokenEnv = "EVENTKIT_CONSOLE_TOKEN"

// ShutdownTimeout is how long Serve waits for the requests in flight when
// it stops.
const ShutdownTimeout = 10 * time.Second

// Serve serves the console on ln, and samples the outboxes (Run), until
// ctx ends or the server fails. Then it shuts the server down, waiting up
// to ShutdownTimeout for the requests in flight, and stops sampling. It
// returns nil when ctx ended, else the server's error. It does not Close
// the console: call Close after it.
func (c *Console) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		_ = c.Run(runCtx)
	}()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	stop()
	<-sampled
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}

// ExposureWarning returns the warning to print when the console listens on
// addr beyond this machine (not a loopback address), "" when it does not:
// anyone who reaches it reads the console, after logging in if private.
func ExposureWarning(addr string, private bool) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if isLoopback(host) {
		return ""
	}
	how := " (a private console needs the token to read too)"
	if private {
		how = " after logging in"
	}
	return fmt.Sprintf("warning: listening on %s, beyond this machine: anyone who reaches it reads the console%s", addr, how)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// URLPasswords returns the passwords of the URLs (scheme://user:password@…),
// for Config.Secrets: the console then never shows them, even outside a
// URL (in an error that quotes one without its scheme).
func URLPasswords(urls ...string) []string {
	var out []string
	for _, u := range urls {
		if _, rest, ok := strings.Cut(u, "://"); ok {
			if at := strings.LastIndex(rest, "@"); at >= 0 {
				if _, pw, ok := strings.Cut(rest[:at], ":"); ok && pw != "" {
					out = append(out, pw)
				}
			}
		}
	}
	return out
}
