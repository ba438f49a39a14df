package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/b2131a45/eventkit/internal/testenv"
)

func TestMain(m *testing.M) {
	// Sarama's metrics library starts one process-wide ticker goroutine the
	// first time a meter is made (by the Kafka transport) and never stops it.
	testenv.Main(m, goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"))
}

// eventkit runs the command in-process and returns its exit code and output.
func eventkit(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// Every kind of bad input exits 2, says what is wrong and how to get the
// usage, and touches no service: the URLs point nowhere reachable, or the
// input is refused before they are used.
func TestUsage(t *testing.T) {
	t.Parallel()
	sqlite := "sqlite:" + filepath.Join(t.TempDir(), "never.db")
	tests := []struct {
		args []string
		want string
	}{
		{nil, "missing command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"migrat"}, `did you mean "migrate"`},
		{[]string{"outbox"}, "outbox: missing subcommand"},
		{[]string{"outbox", "explode"}, `unknown command "outbox explode"`},
		{[]string{"dlq"}, "dlq: missing subcommand"},
		{[]string{"dlq", "lst"}, `unknown command "dlq lst"`},
		{[]string{"version", "now"}, "unexpected argument"},
		{[]string{"help", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"help", "outbox", "explode"}, `unknown command "outbox explode"`},
		{[]string{"--nope"}, "unknown flag: --nope"},
		{[]string{"outbox", "stats", "--nope"}, "unknown flag: --nope"},
		{[]string{"outbox", "stats", "--db"}, "flag needs an argument"},
		{[]string{"outbox", "stats", "--db", ""}, "--db is required"},
		{[]string{"outbox", "stats", "--db", "   "}, "--db is required"},
		{[]string{"outbox", "stats", "--db", sqlite, "--limit", "3"}, "unknown flag: --limit"},
		{[]string{"outbox", "pending", "--db", sqlite, "--limit", "0"}, "--limit must be at least 1"},
		{[]string{"outbox", "failed", "--db", sqlite, "--limit", "-1"}, "--limit must be at least 1"},
		{[]string{"outbox", "scheduled", "--db", sqlite, "--limit", "many"}, `invalid argument "many"`},
		{[]string{"outbox", "purge", "--db", sqlite}, "--older-than"},
		{[]string{"outbox", "purge", "--db", sqlite, "--older-than", "-1h"}, "--older-than"},
		{[]string{"outbox", "purge", "--db", sqlite, "--older-than", "soon"}, `invalid argument "soon"`},
		{[]string{"outbox", "requeue", "--db", sqlite}, "give the event ids"},
		{[]string{"outbox", "stats", "--db", "oracle://u:hunter22@h/db"}, `scheme "oracle"`},
		{[]string{"outbox", "stats", "--db", "postgres://u:hunter22@[::1/db"}, "--db"},
		{[]string{"outbox", "stats", "--db", "mysql://u:hunter22@127.0.0.1:1/test?tls=maybe"}, "--db"},
		{[]string{"outbox", "stats", "--db", "sqlite:"}, "missing SQLite file path"},
		{[]string{"outbox", "stats", "--db", "nothing"}, "--db"},
		{[]string{"outbox", "stats", "--db", sqlite, "--outbox", "x; DROP TABLE y"}, "--outbox"},
		{[]string{"outbox", "requeue", "id", "--db", sqlite, "--outbox", ""}, "--outbox"},
		{[]string{"outbox", "adopt", "--db", ""}, "--db is required"},
		{[]string{"outbox", "adopt", "--db", sqlite, "stray"}, `unexpected argument "stray"`},
		{[]string{"outbox", "handover", "--db", sqlite, "--forwarder"}, "unknown flag: --forwarder"},
		{[]string{"migrate", "--db", sqlite, "stray"}, "unexpected argument"},
		{[]string{"migrate", "--db", sqlite, "--outbox", "ok", "--outbox", "not ok"}, "--outbox"},
		{[]string{"migrate", "--db", sqlite, "--inbox", "Bad-Table"}, "--inbox"},
		{[]string{"migrate", "--db", sqlite, "--inbox", ""}, "must not be empty"},
		{[]string{"migrate", "--db", sqlite, "--outbox", ""}, "must not be empty"},
		{[]string{"migrate", "--db", "oracle://h/db"}, `scheme "oracle"`},
		{[]string{"dlq", "list", "--transport", "mem://"}, "--topic is required"},
		{[]string{"dlq", "replay", "--topic", "t.dlq", "--transport", ""}, "--transport is required"},
		{[]string{"dlq", "list", "--topic", "t.dlq", "--transport", "amqp://guest:hunter22@[::1"}, "--transport"},
		{[]string{"dlq", "list", "--topic", "t.dlq", "--transport", "ftp://guest:hunter22@h/"}, `unknown scheme "ftp"`},
		{[]string{"dlq", "list", "--topic", "t.dlq", "--transport", "localhost:5672"}, "--transport"},
		{[]string{"dlq", "list", "--topic", "t.dlq", "--transport", "amqp://guest:hunter22@127.0.0.1:1/?prefetch=lots"}, "--transport"},
		{[]string{"dlq", "list", "--topic", "t.dlq", "--transport", "kafka://127.0.0.1:1?sasl_mechanism=KERBEROS"}, "--transport"},
		{[]string{"dlq", "list", "--topic", "t.dlq", "--transport", "kafka://127.0.0.1:1?no_such_option=1"}, "--transport"},
		{[]string{"dlq", "list", "--topic", "t.dlq", "--transport", "postgres://u:hunter22@127.0.0.1:1/db?delay_table=Bad"}, "--transport"},
		{[]string{"dlq", "list", "--transport", "amqp://guest:hunter22@127.0.0.1:1/", "--topic", `t"; DROP TABLE y; --`}, "--topic"},
		{[]string{"dlq", "list", "--transport", "amqp://guest:hunter22@127.0.0.1:1/", "--topic", "t.dlq", "--group", "g h/../x"}, "--group"},
		{[]string{"dlq", "list", "--transport", "amqp://guest:hunter22@127.0.0.1:1/", "--topic", "t.dlq", "--group", ""}, "--group"},
		{[]string{"dlq", "list", "--transport", "mem://", "--topic", "t.dlq", "--reason", "bored"}, `--reason "bored"`},
		{[]string{"dlq", "list", "--transport", "mem://", "--topic", "t.dlq", "--idle", "0s"}, "--idle > 0"},
		{[]string{"dlq", "list", "--transport", "mem://", "--topic", "t.dlq", "--limit", "-1"}, "--limit"},
		{[]string{"dlq", "replay", "--transport", "mem://", "--topic", "t.dlq", "--older-than", "2h", "--newer-than", "1h"}, "--newer-than (1h0m0s) must be longer"},
		{[]string{"dlq", "replay", "--transport", "mem://", "--topic", "t.dlq", "stray"}, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			code, out, errOut := eventkit(t, tt.args...)
			assert.Equal(t, exitUsage, code, "stdout %q stderr %q", out, errOut)
			assert.Contains(t, errOut, tt.want)
			assert.Contains(t, errOut, "--help' for usage")
			assert.Empty(t, out)
			assert.NotContains(t, errOut, "hunter22")
		})
	}
	_, err := os.Stat(strings.TrimPrefix(sqlite, "sqlite:"))
	assert.ErrorIs(t, err, os.ErrNotExist, "bad usage created the SQLite file")
}

// A well-formed command whose operation fails exits 1, without the usage
// hint: unreachable services, a missing SQLite file, outbox table or
// dead-letter topic.
func TestOperationFailuresExitOne(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing.db")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"outbox", "stats", "--db", "postgres://user:hunter22@127.0.0.1:1/test?connect_timeout=2"}, "connect"},
		{[]string{"outbox", "requeue", "x", "--db", "mysql://user:hunter22@127.0.0.1:1/test?timeout=2s"}, "connect"},
		{[]string{"migrate", "--db", "postgres://user:hunter22@127.0.0.1:1/test?connect_timeout=2"}, "connect"},
		{[]string{"dlq", "list", "--transport", "amqp://guest:hunter22@127.0.0.1:1/?dial_timeout=1s", "--topic", "t.dlq"}, "--transport"},
		{[]string{"dlq", "replay", "--transport", "postgres://user:hunter22@127.0.0.1:1/test?connect_timeout=2", "--topic", "t.dlq"}, "--transport"},
		{[]string{"dlq", "list", "--transport", "mem://", "--topic", "t.dlq"}, `dead-letter topic "t.dlq" does not exist for consumer group "eventkit-dlq" on mem://`},
	}
	for _, cmd := range []string{"stats", "pending", "failed", "scheduled", "requeue", "purge", "adopt", "handover"} {
		args := []string{"outbox", cmd, "--db", "sqlite:" + missing}
		switch cmd {
		case "requeue":
			args = append(args, "some-id")
		case "purge":
			args = append(args, "--older-than", "1h")
		}
		tests = append(tests, struct {
			args []string
			want string
		}{args, "SQLite database " + missing + " does not exist; nothing was created"})
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			code, out, errOut := eventkit(t, tt.args...)
			assert.Equal(t, exitError, code, "stdout %q stderr %q", out, errOut)
			assert.Contains(t, errOut, tt.want)
			assert.NotContains(t, errOut, "for usage")
			assert.NotContains(t, errOut, "hunter22")
		})
	}
	_, err := os.Stat(missing)
	assert.ErrorIs(t, err, os.ErrNotExist, "a command other than migrate created the SQLite file")
}

// commands is the command set, exactly.
var commands = []string{
	"console", "contracts", "contracts check", "contracts export", "dlq", "dlq list", "dlq replay", "help", "migrate",
	"outbox", "outbox adopt", "outbox failed", "outbox handover", "outbox pending", "outbox purge",
	"outbox requeue", "outbox scheduled", "outbox stats", "version",
}

func TestCommandSet(t *testing.T) {
	t.Parallel()
	root := newRoot(&bytes.Buffer{}, &bytes.Buffer{})
	root.InitDefaultHelpCmd()
	var got []string
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			got = append(got, strings.TrimPrefix(sub.CommandPath(), "eventkit "))
			walk(sub)
		}
	}
	walk(root)
	slices.Sort(got)
	assert.Equal(t, commands, got)
}

// Each command prints its own usage, flags and defaults with --help, -h and
// "eventkit help ...", exit 0, on standard output.
func TestHelp(t *testing.T) {
	t.Parallel()
	dbFlags := []string{"--db URL", "$EVENTKIT_DB, then $DATABASE_URL", "--outbox name", `(default "outbox")`, "--json"}
	dlqFlags := []string{"--transport URL", "$EVENTKIT_TRANSPORT, then $TRANSPORT_URL", "--topic topic", "--group group",
		`(default "eventkit-dlq")`, "--handler handler", "--reason reason", "retries_exhausted", "--older-than duration",
		"--newer-than duration", "--idle duration", "(default 3s)", "--limit N", "--json"}
	tests := map[string][]string{
		"":                 {"Usage:\n  eventkit [command]", "migrate", "outbox", "dlq", "version", "Exit codes: 0 success, 1 operation failed", "2 bad usage"},
		"migrate":          {"eventkit migrate [flags]", "--db URL", "--outbox name", "(repeatable)", "--inbox table"},
		"outbox":           {"eventkit outbox [command]", "stats", "pending", "failed", "scheduled", "requeue", "purge", "adopt", "handover"},
		"outbox stats":     append([]string{"eventkit outbox stats [flags]"}, dbFlags...),
		"outbox pending":   append([]string{"eventkit outbox pending [flags]", "--limit N", "(default 100)"}, dbFlags...),
		"outbox failed":    append([]string{"eventkit outbox failed [flags]", "--limit N", "(default 100)"}, dbFlags...),
		"outbox scheduled": append([]string{"eventkit outbox scheduled [flags]", "--limit N", "(default 100)"}, dbFlags...),
		"outbox requeue":   append([]string{"eventkit outbox requeue EVENT_ID... [flags]"}, dbFlags...),
		"outbox purge":     append([]string{"eventkit outbox purge --older-than DURATION [flags]", "--older-than duration"}, dbFlags...),
		"outbox adopt":     append([]string{"eventkit outbox adopt [flags]", "--forwarder-group group"}, dbFlags...),
		"outbox handover":  append([]string{"eventkit outbox handover [flags]", "--forwarder-group group"}, dbFlags...),
		"dlq":              {"eventkit dlq [command]", "list", "replay"},
		"dlq list":         append([]string{"eventkit dlq list [flags]", "without taking, moving or changing", "never declared"}, dlqFlags...),
		"dlq replay":       append([]string{"eventkit dlq replay [flags]"}, dlqFlags...),
		"version":          {"eventkit version [flags]", "(devel)"},
	}
	for cmd, want := range tests {
		path := strings.Fields(cmd)
		for _, args := range [][]string{append(slices.Clone(path), "--help"), append(slices.Clone(path), "-h"), append([]string{"help"}, path...)} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				t.Parallel()
				code, out, errOut := eventkit(t, args...)
				require.Equal(t, exitOK, code, errOut)
				assert.Empty(t, errOut)
				for _, w := range want {
					assert.Contains(t, out, w)
				}
				if cmd != "" {
					assert.NotContains(t, out, "Exit codes", "a subcommand prints its own usage, not the global one")
				}
			})
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	code, out, errOut := eventkit(t, "version")
	require.Equal(t, exitOK, code, errOut)
	assert.Regexp(t, `^eventkit \S+\ngo       go\S* `+runtime.GOOS+"/"+runtime.GOARCH+"\n", out)

	var b bytes.Buffer
	printVersion(&b, &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/b2131a45/eventkit", Version: "v1.4.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "a0e696a"}, {Key: "vcs.time", Value: "2026-12-02T19:10:06Z"}, {Key: "vcs.modified", Value: "true"}}})
	assert.Equal(t, "eventkit v1.4.0\ngo       go1.26.0 "+runtime.GOOS+"/"+runtime.GOARCH+
		"\nrevision a0e696a (2026-12-02T19:10:06Z), with uncommitted changes\n", b.String())
	b.Reset()
	printVersion(&b, &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}})
	assert.Equal(t, "eventkit (devel)\ngo       go1.26.0 "+runtime.GOOS+"/"+runtime.GOARCH+"\n", b.String())
	b.Reset()
	printVersion(&b, nil)
	assert.Contains(t, b.String(), "eventkit (devel)\ngo       "+runtime.Version())
}

// --db and --transport come from the environment when not given; a flag
// given, even empty, wins. (Not parallel: it sets the environment.)
func TestEnvDefaults(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "env.db")
	t.Setenv("EVENTKIT_DB", "")
	t.Setenv("DATABASE_URL", "")
	t.Setenv("EVENTKIT_TRANSPORT", "")
	t.Setenv("TRANSPORT_URL", "")
	code, _, errOut := eventkit(t, "outbox", "stats")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "--db is required")
	code, _, errOut = eventkit(t, "dlq", "list", "--topic", "t.dlq")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "--transport is required")

	t.Setenv("DATABASE_URL", "sqlite:"+missing)
	code, _, errOut = eventkit(t, "outbox", "stats")
	assert.Equal(t, exitError, code)
	assert.Contains(t, errOut, missing)
	t.Setenv("EVENTKIT_DB", "oracle://h/db") // first in line
	code, _, errOut = eventkit(t, "outbox", "stats")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "oracle")
	code, _, errOut = eventkit(t, "outbox", "stats", "--db", "")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "--db is required", "a flag given empty is not replaced by the environment")

	t.Setenv("TRANSPORT_URL", "mem://")
	code, _, errOut = eventkit(t, "dlq", "list", "--topic", "t.dlq")
	assert.Equal(t, exitError, code)
	assert.Contains(t, errOut, "on mem://")
	t.Setenv("EVENTKIT_TRANSPORT", "ftp://h/")
	code, _, errOut = eventkit(t, "dlq", "list", "--topic", "t.dlq")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "ftp")

	code, out, _ := eventkit(t, "outbox", "stats", "--help")
	assert.Equal(t, exitOK, code)
	assert.NotContains(t, out, "oracle", "help shows where the default comes from, never its value")
}
