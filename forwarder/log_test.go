package forwarder_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/testenv"
)

type lockedBuffer struct{ testenv.Buffer }

func (l *lockedBuffer) lines() []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

type permanentErr struct{}

func (permanentErr) Error() string   { return "message too large" }
func (permanentErr) Permanent() bool { return true }

// The relay logs a parked event with its id, name, correlation id, topic
// and outbox, and never its payload.
func TestRelayLogsEventAttributes(t *testing.T) {
	t.Parallel()
	var buf lockedBuffer
	e := newEnv(t, pgStd, func(c *forwarder.OutboxConfig) {
		c.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	b := &memBroker{}
	b.setFail(func(string, *message.Message) error { return permanentErr{} })
	cfg := fastRelay()
	cfg.MaxAttempts = 1
	e.start(b, cfg)
	ctx := events.WithCorrelationID(t.Context(), "conv-42")
	tx := e.begin(ctx)
	require.NoError(t, e.ob.Add(ctx, tx.raw, OrderCreated{ID: "secret-payload-value", Seq: 7}))
	require.NoError(t, tx.commit())

	var parked map[string]any
	require.Eventually(t, func() bool {
		for _, l := range buf.lines() {
			if l["msg"] == "eventkit: event parked as failed" {
				parked = l
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, "test.order_created", parked["event_name"])
	assert.Equal(t, "conv-42", parked["correlation_id"])
	assert.Equal(t, "test.order_created", parked["topic"])
	assert.Equal(t, e.name, parked["outbox"])
	assert.NotEmpty(t, parked["event_id"])
	assert.NotEmpty(t, parked["relay"])
	assert.Equal(t, "message too large", parked["error"])
	assert.NotContains(t, buf.String(), "secret-payload-value", "payloads are never logged")
}
