package console_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/console"
)

// Serve serves the pages until its context ends, then stops and returns
// nil: the listener is closed.
func TestServeStopsWhenItsContextEnds(t *testing.T) {
	t.Parallel()
	c, err := console.New(console.Config{})
	require.NoError(t, err)
	defer c.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/outboxes")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(console.ShutdownTimeout + 5*time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	_, err = net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	assert.Error(t, err, "the listener is closed")
}

func TestExposureWarning(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		"127.0.0.1:8089": "",
		"localhost:8089": "",
		"[::1]:8089":     "",
		"0.0.0.0:8089":   "warning: listening on 0.0.0.0:8089, beyond this machine: anyone who reaches it reads the console (a private console needs the token to read too)",
		":8089":          "warning: listening on :8089, beyond this machine: anyone who reaches it reads the console (a private console needs the token to read too)",
	} {
		assert.Equal(t, want, console.ExposureWarning(addr, false), addr)
	}
	assert.Contains(t, console.ExposureWarning("10.0.0.1:8089", true), "reads the console after logging in")
}

func TestURLPasswords(t *testing.T) {
	t.Parallel()
	assert.Equal(t, []string{"s3cret", "p@ss"}, console.URLPasswords(
		"postgres://app:s3cret@db:5432/app", "amqp://guest:p@ss@rabbit:5672/", "sqlite:orders.db", "kafka://broker:9092", "mysql://root@db/x", ""))
}
