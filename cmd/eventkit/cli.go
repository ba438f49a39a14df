package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

const usage = `eventkit operates eventkit outboxes and dead-letter queues.

Usage:
  eventkit migrate --db URL [--outbox NAME]... [--inbox TABLE]...
  eventkit outbox stats    --db URL [--outbox NAME] [--json]
  eventkit outbox pending  --db URL [--outbox NAME] [--limit N] [--json]
  eventkit outbox failed   --db URL [--outbox NAME] [--limit N] [--json]
  eventkit outbox scheduled --db URL [--outbox NAME] [--limit N] [--json]
  eventkit outbox requeue  --db URL [--outbox NAME] EVENT_ID...
  eventkit outbox purge    --db URL [--outbox NAME] --older-than DURATION [--json]
  eventkit outbox adopt    --db URL [--outbox NAME] [--forwarder-group G] [--json]
  eventkit outbox handover --db URL [--outbox NAME] [--forwarder-group G] [--json]
  eventkit dlq list   --transport URL --topic TOPIC [--group G] [--handler H] [--reason R]
                      [--older-than D] [--newer-than D] [--limit N] [--idle D] [--json]
  eventkit dlq replay (same flags as list)

--db defaults to $EVENTKIT_DB, then $DATABASE_URL (postgres://…, mysql://…, sqlite:path).
--transport defaults to $EVENTKIT_TRANSPORT, then $TRANSPORT_URL.
adopt marks published what a stock Watermill forwarder (consumer group G, default "")
acknowledged on the outbox: stop the stock forwarder, adopt, then start the relay.
handover is the reverse: stop every relay, handover, then start the stock forwarder.
Exit codes: 0 success, 1 operation failed, 2 bad usage.
`

// run is the whole command, testable: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout)
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintln(stderr, "eventkit:", err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "run 'eventkit help' for usage")
		return exitUsage
	}
	return exitError
}

func dispatch(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return usagef("missing command")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help", "-h", "--help":
		return flag.ErrHelp
	case "migrate":
		return migrate(ctx, rest, out)
	case "outbox", "dlq":
		if len(rest) == 0 {
			return usagef("%s: missing subcommand", cmd)
		}
		sub, rest := rest[0], rest[1:]
		f, ok := commands[cmd+" "+sub]
		if !ok {
			return usagef("unknown command %q", cmd+" "+sub)
		}
		return f(ctx, rest, out)
	default:
		return usagef("unknown command %q", cmd)
	}
}

var commands = map[string]func(context.Context, []string, io.Writer) error{
	"outbox stats":     outboxStats,
	"outbox pending":   outboxPending,
	"outbox failed":    outboxFailed,
	"outbox scheduled": outboxScheduled,
	"outbox requeue":   outboxRequeue,
	"outbox purge":     outboxPurge,
	"outbox adopt":     outboxAdopt,
	"outbox handover":  outboxHandOver,
	"dlq list":         dlqList,
	"dlq replay":       dlqReplay,
}

// flags returns a flag set whose errors are usage errors.
func flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	return nil
}

// interspersed lets flags follow positional arguments (eventkit outbox
// requeue ID --db URL), returning the positional ones.
func interspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func envDefault(keys ...string) string {
	for _, k := range keys {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return ""
}

func required(name, value string) error {
	if strings.TrimSpace(value) == "" {
		return usagef("--%s is required", name)
	}
	return nil
}
