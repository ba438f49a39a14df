package logging_test

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/b2131a45/eventkit/logging"
)

// An application on slog hands the same logger to Watermill's router (and
// to anything else that takes a watermill.LoggerAdapter).
func ExampleToWatermill() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // a stable output for the example
			}
			return a
		},
	}))
	wm := logging.ToWatermill(logger)
	wm.Info("router started", watermill.LogFields{"handlers": 2})
	// Output:
	// level=INFO msg="router started" handlers=2
}

// An application on Watermill's logger hands it to eventkit's configs,
// which take a *slog.Logger. Watermill has no warning level: a warning is
// logged at Info with level=WARN.
func ExampleFromWatermill() {
	var lines []string
	wm := watermill.NewCaptureLogger()
	logger := logging.FromWatermill(wm) // e.g. forwarder.OutboxConfig{Logger: logger}
	logger.Warn("eventkit: broker unavailable", "outbox", "orders")
	for level, entries := range wm.Captured() {
		for _, e := range entries {
			lines = append(lines, fmt.Sprintf("info=%v %s level=%v outbox=%v", level == watermill.InfoLogLevel, e.Msg, e.Fields["level"], e.Fields["outbox"]))
		}
	}
	fmt.Println(strings.Join(lines, "\n"))
	// Output:
	// info=true eventkit: broker unavailable level=WARN outbox=orders
}
