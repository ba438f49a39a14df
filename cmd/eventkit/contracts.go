package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/b2131a45/eventkit/contracts"
)

// errBreaking is the error of a check that found breaking changes: exit 1,
// the report already printed.
var errBreaking = errors.New("breaking changes (see above)")

func contractsCmd() *cobra.Command {
	return group("contracts", "export and check event contracts (JSON Schemas, AsyncAPI)",
		"Work on contract snapshots: the JSON Schema of every event version and which service publishes\n"+
			"and consumes it, as a service's test writes them with contracttest (EVENTKIT_UPDATE_CONTRACTS=1)\n"+
			"or contracts.WriteSnapshotFile. See docs/contracts.md.",
		contractsExportCmd(), contractsCheckCmd())
}

func contractsExportCmd() *cobra.Command {
	var cfg contracts.ExportConfig
	var format string
	cmd := &cobra.Command{
		Use:   "export SNAPSHOT",
		Short: "print the AsyncAPI 3.0 document of a contract snapshot",
		Long: "Print the AsyncAPI 3.0 document of SNAPSHOT: a channel per topic, a message per event version\n" +
			"with its JSON Schema, the envelope headers as one message trait, and an operation per publisher and\n" +
			"consumer. --service limits it to one service's document.",
		Args: exactlyOne("snapshot file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch format {
			case string(contracts.FormatJSON), string(contracts.FormatYAML):
				cfg.Format = contracts.Format(format)
			default:
				return usagef("contracts export: --format %q: want json or yaml", format)
			}
			snap, err := contracts.ReadSnapshotFile(args[0])
			if err != nil {
				return usagef("%v", err)
			}
			if err := contracts.Export(cmd.OutOrStdout(), snap, cfg); err != nil {
				return usagef("%v", err)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Service, "service", "", "only this `service`'s operations, channels and messages")
	fs.StringVar(&format, "format", string(contracts.FormatJSON), "output `format`: json or yaml")
	fs.StringVar(&cfg.Title, "title", "", "document title (info.title)")
	fs.StringVar(&cfg.Version, "version", "", "document version (info.version, default 1.0.0)")
	return cmd
}

func contractsCheckCmd() *cobra.Command {
	var against, mode string
	cmd := &cobra.Command{
		Use:   "check --against OLD CURRENT",
		Short: "check that the contracts of CURRENT are compatible with OLD",
		Long: "Compare the snapshot CURRENT (the contracts now) with OLD (the committed ones) under --mode:\n" +
			"backward (new consumers read old events), forward (old consumers read new events), full (both),\n" +
			"each optionally _transitive (against every earlier version, not only the last). Each breaking\n" +
			"change names the event, the version, the field and whom it breaks. Exit 0 compatible, 1 breaking\n" +
			"changes, 2 a snapshot that cannot be read or used.",
		Args: exactlyOne("current snapshot file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := required("against", against); err != nil {
				return err
			}
			m, err := contracts.ParseMode(mode)
			if err != nil {
				return usagef("%v", err)
			}
			rep, err := contracts.CheckFile(args[0], against, m)
			if err != nil {
				return usagef("%v", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), rep.String())
			if contracts.ExitCode(rep.Err()) != 0 {
				return errBreaking
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&against, "against", "", "the committed `snapshot` to be compatible with (required)")
	cmd.Flags().StringVar(&mode, "mode", string(contracts.Backward), "compatibility `mode`: backward, forward, full, each optionally _transitive")
	return cmd
}

// exactlyOne is the Args of a command that takes one positional argument.
func exactlyOne(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 0:
			return usagef("%s: missing %s", name(cmd), what)
		case len(args) > 1:
			return usagef("%s: unexpected argument %q", name(cmd), args[1])
		}
		return nil
	}
}
