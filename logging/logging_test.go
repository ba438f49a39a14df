package logging_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/stretchr/testify/assert"

	"github.com/b2131a45/eventkit/logging"
)

func TestFromWatermill(t *testing.T) {
	t.Parallel()
	capture := watermill.NewCaptureLogger()
	l := logging.FromWatermill(capture).With(slog.String("outbox", "orders"))
	boom := errors.New("boom")
	l.Error("eventkit: event parked as failed", slog.String("event_id", "e-1"), slog.Any("error", boom))
	l.Warn("eventkit: broker unavailable", slog.Group("relay", slog.String("id", "r-1")))
	l.Info("eventkit: relay active")
	l.Debug("eventkit: duplicate dropped", slog.String("handler", "h"))
	l.Log(t.Context(), slog.LevelDebug-4, "trace line")

	assert.True(t, capture.Has(watermill.CapturedMessage{Level: watermill.ErrorLogLevel,
		Fields: watermill.LogFields{"outbox": "orders", "event_id": "e-1"}, Msg: "eventkit: event parked as failed", Err: boom}))
	assert.True(t, capture.Has(watermill.CapturedMessage{Level: watermill.InfoLogLevel,
		Fields: watermill.LogFields{"outbox": "orders", "relay.id": "r-1", "level": "WARN"}, Msg: "eventkit: broker unavailable"}))
	assert.True(t, capture.Has(watermill.CapturedMessage{Level: watermill.InfoLogLevel,
		Fields: watermill.LogFields{"outbox": "orders"}, Msg: "eventkit: relay active"}))
	assert.True(t, capture.Has(watermill.CapturedMessage{Level: watermill.DebugLogLevel,
		Fields: watermill.LogFields{"outbox": "orders", "handler": "h"}, Msg: "eventkit: duplicate dropped"}))
	assert.True(t, capture.Has(watermill.CapturedMessage{Level: watermill.TraceLogLevel,
		Fields: watermill.LogFields{"outbox": "orders"}, Msg: "trace line"}))
	assert.NotPanics(t, func() { logging.FromWatermill(nil).Info("discarded") })
}

func TestToWatermill(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := logging.ToWatermill(slog.New(slog.NewTextHandler(&buf, nil)))
	w.With(watermill.LogFields{"handler": "h"}).Info("handled", watermill.LogFields{"event_id": "e-1"})
	assert.True(t, strings.Contains(buf.String(), "handler=h") && strings.Contains(buf.String(), "event_id=e-1"), buf.String())
	assert.NotPanics(t, func() { logging.ToWatermill(nil).Info("discarded", nil) })
}
