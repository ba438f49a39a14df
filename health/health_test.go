package health_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/health"
)

func TestHandler(t *testing.T) {
	t.Parallel()
	ok := func(context.Context) error { return nil }
	failing := func(context.Context) error { return errors.New("relay is not running") }
	slow := func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}
	for _, tc := range []struct {
		name   string
		checks health.Checks
		code   int
		want   health.Report
	}{
		{"all pass", health.Checks{"relay": ok, "processor": ok}, http.StatusOK,
			health.Report{Status: "ok", Checks: map[string]string{"relay": "ok", "processor": "ok"}}},
		{"one fails", health.Checks{"relay": failing, "processor": ok}, http.StatusServiceUnavailable,
			health.Report{Status: "unavailable", Checks: map[string]string{"relay": "relay is not running", "processor": "ok"}}},
		{"timeout", health.Checks{"db": slow}, http.StatusServiceUnavailable,
			health.Report{Status: "unavailable", Checks: map[string]string{"db": "context deadline exceeded"}}},
		{"no checks", health.Checks{}, http.StatusOK, health.Report{Status: "ok", Checks: map[string]string{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(health.Handler(tc.checks, health.Config{Timeout: 50 * time.Millisecond}))
			defer srv.Close()
			resp, err := http.Get(srv.URL)
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, tc.code, resp.StatusCode)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			var got health.Report
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
			assert.Equal(t, tc.want, got)
		})
	}
}
