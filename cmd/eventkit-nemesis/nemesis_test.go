package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
)

// TestNemesisShort is the short nemesis run of the test command: a fixed
// seed and a random one, 30 s of load and faults each (every fault kind at
// least once per run), over throw-away PostgreSQL and RabbitMQ clusters of
// its own. It fails on any violation the checker reports, and prints each
// run's figures (testenv.Figure). The long run is documented in
// docs/guarantees.md.
func TestNemesisShort(t *testing.T) {
	if testing.Short() {
		t.Skip("the nemesis runs about two minutes")
	}
	if _, err := pgBinDir(); err != nil {
		testenv.Unavailable(t, "PostgreSQL (initdb)", err)
	}
	if _, err := exec.LookPath("rabbitmq-server"); err != nil {
		testenv.Unavailable(t, "RabbitMQ (rabbitmq-server)", err)
	}
	bin := filepath.Join(t.TempDir(), "eventkit-nemesis")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	// Within go test's deadline (10 min by default): interrupted a
	// minute and a half before it, the run stops its services and
	// servers and the test prints what it said.
	deadline := time.Now().Add(12 * time.Minute)
	if d, ok := t.Deadline(); ok {
		deadline = d.Add(-30 * time.Second)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(-time.Minute))
	defer cancel()
	report := filepath.Join(t.TempDir(), "report.json")
	cmd := exec.CommandContext(ctx, bin, "-seed", "1,random", "-duration", "30s", "-report", report)
	// Stopped like a user would (Ctrl-C), so that it stops its services,
	// PostgreSQL and RabbitMQ nodes before it exits.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stdout
	err = cmd.Run()
	text := stdout.String()
	if err != nil {
		t.Fatalf("the nemesis failed (%v):\n%s", err, text)
	}
	assert.Equal(t, 2, strings.Count(text, "checker: 0 violations"), text)
	for _, line := range regexp.MustCompile(`(?m)^(== nemesis run .*|orders: .*|faults: .*|wire \(observer\): .*|effects: .*|checker: .*)$`).FindAllString(text, -1) {
		testenv.Figure(t, "nemesis: %s", line)
	}
	_, err = os.Stat(report)
	assert.NoError(t, err, "the JSON report")
}
