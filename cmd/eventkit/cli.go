package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
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

const rootLong = `eventkit operates eventkit outboxes, dead-letter queues and event contracts.

--db defaults to $EVENTKIT_DB, then $DATABASE_URL (postgres://…, mysql://…, sqlite:path).
--transport defaults to $EVENTKIT_TRANSPORT, then $TRANSPORT_URL (amqp://…, kafka://…,
postgres://…, mysql://…).

The reading commands (outbox stats, pending, failed, scheduled; dlq list) declare and create
nothing: a missing outbox table, SQLite file or dead-letter topic is reported, not made.
dlq list browses: it takes, moves and changes nothing (see 'eventkit dlq list --help').

Exit codes: 0 success, 1 operation failed (database or broker error, missing outbox or
dead-letter topic, breaking contract changes), 2 bad usage (unknown command or flag, missing or invalid flag value,
URL or name). Errors go to standard error and never contain passwords.`

// run is the whole command, testable: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	if args == nil {
		args = []string{} // cobra reads os.Args for nil
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "eventkit:", err)
	var ue usageError
	if errors.As(err, &ue) {
		if cmd == nil || cmd.Name() == "help" {
			cmd = root
		}
		fmt.Fprintf(stderr, "run '%s --help' for usage\n", cmd.CommandPath())
		return exitUsage
	}
	return exitError
}

// newRoot returns the command tree, writing to stdout and stderr.
func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "eventkit",
		Short: "eventkit operates eventkit outboxes, dead-letter queues and event contracts",
		Long:  rootLong,
		// Errors are printed by run, which also picks the exit code.
		SilenceErrors:         true,
		SilenceUsage:          true,
		DisableFlagsInUseLine: true,
		CompletionOptions:     cobra.CompletionOptions{DisableDefaultCmd: true},
		Args:                  unknownCommand,
		RunE: func(*cobra.Command, []string) error {
			return usagef("missing command")
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "{{if .Runnable}}", "{{if and .Runnable (not .HasAvailableSubCommands)}}", 1))
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if !cmd.HasParent() {
			return usagef("%v", err)
		}
		return usagef("%s: %v", name(cmd), err)
	})
	root.SetHelpCommand(helpCmd())
	root.AddCommand(migrateCmd(), outboxCmd(), dlqCmd(), consoleCmd(), contractsCmd(), versionCmd())
	return root
}

// helpCmd is "eventkit help [command]": the usage of the command, as with
// --help; an unknown command is a usage error, as everywhere else.
func helpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "print the usage of any command",
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := cmd.Root().Find(args)
			if err != nil {
				return usagef("%v", err)
			}
			if len(rest) > 0 {
				if err := unknownCommand(target, rest); err != nil {
					return err
				}
			}
			target.InitDefaultHelpFlag() // as --help shows it
			return target.Help()
		},
	}
}

// group returns a command that only holds subcommands: without one, or
// with an unknown one, it is a usage error.
func group(use, short, long string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:                   use,
		Short:                 short,
		Long:                  long,
		DisableFlagsInUseLine: true,
		Args:                  unknownCommand,
		RunE: func(cmd *cobra.Command, _ []string) error {
			names := make([]string, 0, len(cmd.Commands()))
			for _, sub := range cmd.Commands() {
				names = append(names, sub.Name())
			}
			return usagef("%s: missing subcommand (%s)", name(cmd), strings.Join(names, ", "))
		},
	}
	c.AddCommand(subs...)
	return c
}

// unknownCommand is the Args of the root and the groups: an argument is a
// command that does not exist.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	prefix := ""
	if cmd.HasParent() {
		prefix = name(cmd) + " "
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		return usagef("unknown command %q (did you mean %q?)", prefix+args[0], prefix+s[0])
	}
	return usagef("unknown command %q", prefix+args[0])
}

// noArgs is the Args of a command that takes no positional argument.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s: unexpected argument %q", name(cmd), args[0])
	}
	return nil
}

// name is the command's path without "eventkit", for messages.
func name(cmd *cobra.Command) string {
	path := cmd.CommandPath()
	if cmd.HasParent() {
		path = strings.TrimPrefix(path, cmd.Root().Name()+" ")
	}
	return path
}

// fromEnv returns the flag's value if it was given, else the first
// environment variable of keys that is set.
func fromEnv(cmd *cobra.Command, flag, value string, keys ...string) string {
	if cmd.Flags().Changed(flag) {
		return value
	}
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
