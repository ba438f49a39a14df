package health_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/b2131a45/eventkit/health"
)

func ExampleHandler() {
	h := health.Handler(health.Checks{
		"relay":     func(context.Context) error { return nil }, // relay.Health
		"processor": func(context.Context) error { return errors.New("cqrs: router is not running") },
	}, health.Config{})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output: 503 {"status":"unavailable","checks":{"processor":"cqrs: router is not running","relay":"ok"}}
}
