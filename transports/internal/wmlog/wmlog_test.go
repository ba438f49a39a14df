package wmlog_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/b2131a45/eventkit/transports/internal/wmlog"
)

func TestAdapterLevels(t *testing.T) {
	var b strings.Builder
	l := wmlog.Adapter(slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l = l.With(watermill.LogFields{"topic": "t"})

	l.Info("subscribing", nil)
	l.Error("Error querying for message", fmt.Errorf("could not get args for acking the message: %w", context.Canceled), nil)
	l.Error("publish failed", errors.New("broker gone"), nil)

	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got %q", lines)
	}
	for i, want := range []string{"level=DEBUG msg=subscribing", "level=DEBUG msg=\"Error querying", "level=ERROR msg=\"publish failed\""} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d = %q, want it to contain %q", i, lines[i], want)
		}
		if !strings.Contains(lines[i], "topic=t") {
			t.Errorf("line %d = %q lost the With fields", i, lines[i])
		}
	}
	if !strings.Contains(lines[1], "context canceled") {
		t.Errorf("the cancelled error is not in %q", lines[1])
	}
}

func TestAdapterNil(t *testing.T) {
	if _, ok := wmlog.Adapter(nil).(watermill.NopLogger); !ok {
		t.Fatal("a nil logger should discard")
	}
}
