// Package health turns the Health methods of eventkit's components
// (forwarder.Relay.Health, cqrs.Processor.Health, transports.Transport.Health)
// and any other check into an HTTP health endpoint.
//
//	mux.Handle("GET /healthz", health.Handler(health.Checks{
//		"relay":     relay.Health,
//		"processor": proc.Health,
//		"database":  db.PingContext,
//	}, health.Config{}))
//
// The handler answers 200 when every check passes and 503 otherwise, with a
// JSON body naming each check's outcome. Errors of eventkit's checks never
// contain passwords; other checks' errors are shown as they are, so expose
// the endpoint only where their text may be read.
//
// Where this package sits among the others, and the path of an event through
// them: docs/architecture.md in the repository.
package health

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// TimeoutDefault is the default Config.Timeout.
const TimeoutDefault = 5 * time.Second

// Checks maps check names to checks. A check returns nil when healthy.
type Checks map[string]func(ctx context.Context) error

// Config configures Handler. The zero value is the default.
type Config struct {
	// Timeout bounds the checks of one request (they run concurrently).
	// Defaults to TimeoutDefault.
	Timeout time.Duration
}

// Report is the JSON body of the handler's answers.
type Report struct {
	// Status is "ok" when every check passed, else "unavailable".
	Status string `json:"status"`
	// Checks maps each check's name to "ok" or its error.
	Checks map[string]string `json:"checks"`
}

// Run runs the checks concurrently, each with ctx, and reports them.
func Run(ctx context.Context, checks Checks) (Report, bool) {
	rep := Report{Status: "ok", Checks: make(map[string]string, len(checks))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	healthy := true
	for name, check := range checks {
		wg.Go(func() {
			res := "ok"
			if err := check(ctx); err != nil {
				res = err.Error()
			}
			mu.Lock()
			defer mu.Unlock()
			rep.Checks[name] = res
			if res != "ok" {
				healthy = false
			}
		})
	}
	wg.Wait()
	if !healthy {
		rep.Status = "unavailable"
	}
	return rep, healthy
}

// Handler returns an http.Handler that runs checks on every request and
// answers 200 with the Report when all pass, 503 otherwise.
func Handler(checks Checks, cfg Config) http.Handler {
	if cfg.Timeout <= 0 {
		cfg.Timeout = TimeoutDefault
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), cfg.Timeout)
		defer cancel()
		rep, ok := Run(ctx, checks)
		code := http.StatusOK
		if !ok {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(rep)
	})
}
