package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/b2131a45/eventkit/forwarder"
)

const dbUsage = "database `URL`: postgres://…, mysql://…, sqlite:path (defaults to $EVENTKIT_DB, then $DATABASE_URL)"

// outboxFlags are the flags every outbox command has.
type outboxFlags struct {
	db, name string
	json     bool
	limit    int
}

func (o *outboxFlags) register(fs *pflag.FlagSet, withLimit bool) {
	fs.StringVar(&o.db, "db", "", dbUsage)
	fs.StringVar(&o.name, "outbox", forwarder.OutboxNameDefault, "outbox `name`")
	fs.BoolVar(&o.json, "json", false, "print JSON")
	if withLimit {
		fs.IntVar(&o.limit, "limit", 100, "at most `N` rows")
	}
}

// open opens the database and the outbox, which must have been set up: a
// missing SQLite file or outbox table is an error, never created.
func (o *outboxFlags) open(cmd *cobra.Command, a access) (*forwarder.Outbox, *sql.DB, error) {
	dbURL := fromEnv(cmd, "db", o.db, "EVENTKIT_DB", "DATABASE_URL")
	if err := required("db", dbURL); err != nil {
		return nil, nil, err
	}
	if strings.TrimSpace(o.name) == "" {
		return nil, nil, usagef("%s: --outbox must not be empty", name(cmd))
	}
	if cmd.Flags().Lookup("limit") != nil && o.limit < 1 {
		return nil, nil, usagef("%s: --limit must be at least 1, got %d", name(cmd), o.limit)
	}
	db, err := openDB(dbURL, a)
	if err != nil {
		return nil, nil, err
	}
	ob, err := newOutbox(db, o.name)
	if err == nil {
		err = checkSQLiteFile(dbURL)
	}
	if err == nil {
		err = checkOutbox(cmd.Context(), db, ob)
	}
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return ob, db, nil
}

// checkOutbox fails when the outbox table does not exist.
func checkOutbox(ctx context.Context, db *sql.DB, ob *forwarder.Outbox) error {
	found, err := tableExists(ctx, db, ob.Dialect(), ob.Table())
	if err != nil {
		return fmt.Errorf("outbox %s: %w", ob.Name(), err)
	}
	if !found {
		return fmt.Errorf("outbox %s: table %s does not exist in this database; nothing was changed "+
			"(is --outbox right? 'eventkit migrate --outbox %s' creates it)", ob.Name(), ob.Table(), ob.Name())
	}
	return nil
}

func outboxCmd() *cobra.Command {
	return group("outbox", "inspect and repair outboxes",
		"Inspect and repair an outbox: counts, pending, failed and scheduled rows; requeue failed rows,\n"+
			"purge published ones, move between a stock Watermill forwarder and the relay.\n\n"+
			"stats, pending, failed and scheduled only read.",
		outboxStatsCmd(), outboxListCmd("pending", "list pending rows in the order the relay publishes them", (*forwarder.Outbox).Pending),
		outboxListCmd("failed", "list failed rows (parked after MaxAttempts) with their last error", (*forwarder.Outbox).Failed),
		outboxScheduledCmd(), outboxRequeueCmd(), outboxPurgeCmd(), outboxAdoptCmd(), outboxHandOverCmd())
}

func migrateCmd() *cobra.Command {
	var dbURL string
	var outboxes, inboxes []string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "create outbox and inbox tables",
		Long: "Create the tables of the outboxes and inboxes named (without --outbox and --inbox: outbox\n" +
			"\"" + forwarder.OutboxNameDefault + "\" and inbox \"" + inboxTableDefault + "\"), and the SQLite file. Idempotent: " +
			"says which tables it created\nand which already existed.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dbURL = fromEnv(cmd, "db", dbURL, "EVENTKIT_DB", "DATABASE_URL")
			if err := required("db", dbURL); err != nil {
				return err
			}
			return migrate(cmd.Context(), cmd.OutOrStdout(), dbURL, outboxes, inboxes)
		},
	}
	cmd.Flags().StringVar(&dbURL, "db", "", dbUsage)
	cmd.Flags().StringArrayVar(&outboxes, "outbox", nil, "outbox `name` (repeatable)")
	cmd.Flags().StringArrayVar(&inboxes, "inbox", nil, "inbox `table` (repeatable)")
	return cmd
}

func migrate(ctx context.Context, out io.Writer, dbURL string, outboxes, inboxes []string) error {
	if len(outboxes) == 0 && len(inboxes) == 0 {
		outboxes = []string{forwarder.OutboxNameDefault}
		inboxes = []string{inboxTableDefault}
	}
	db, err := openDB(dbURL, accessCreate)
	if err != nil {
		return err
	}
	defer db.Close()
	// Every name is checked before anything is created.
	for _, n := range append(slices.Clone(outboxes), inboxes...) {
		if strings.TrimSpace(n) == "" {
			return usagef("migrate: --outbox and --inbox must not be empty")
		}
	}
	obs := make([]*forwarder.Outbox, len(outboxes))
	for i, n := range outboxes {
		if obs[i], err = newOutbox(db, n); err != nil {
			return err
		}
	}
	ins := make([]setupper, len(inboxes))
	for i, table := range inboxes {
		if ins[i], err = newInbox(db, table); err != nil {
			return usagef("--inbox: %v", err)
		}
	}
	probe, err := newOutbox(db, forwarder.OutboxNameDefault) // for the dialect, which it detects
	if err != nil {
		return err
	}
	dialect := probe.Dialect()
	for _, ob := range obs {
		tables := []string{ob.Table(), ob.Table() + "_scheduled"}
		if ob.Dialect() == forwarder.SQLite {
			tables = append(tables, ob.Table()+"_lease")
		}
		created, err := setUp(ctx, db, ob.Dialect(), tables, ob.Setup)
		if err != nil {
			return fmt.Errorf("outbox %s: %w", ob.Name(), err)
		}
		fmt.Fprintf(out, "outbox %s: %s\n", ob.Name(), createdText(tables, created))
	}
	for i, in := range ins {
		created, err := setUp(ctx, db, dialect, inboxes[i:i+1], in.Setup)
		if err != nil {
			return fmt.Errorf("inbox %s: %w", inboxes[i], err)
		}
		fmt.Fprintf(out, "inbox %s: %s\n", inboxes[i], createdText(inboxes[i:i+1], created))
	}
	return nil
}

type setupper interface{ Setup(context.Context) error }

// setUp runs setup and returns which of tables it created.
func setUp(ctx context.Context, db *sql.DB, d forwarder.Dialect, tables []string, setup func(context.Context) error) ([]string, error) {
	var missing []string
	for _, t := range tables {
		found, err := tableExists(ctx, db, d, t)
		if err != nil {
			return nil, err
		}
		if !found {
			missing = append(missing, t)
		}
	}
	if err := setup(ctx); err != nil {
		return nil, err
	}
	return missing, nil
}

func createdText(tables, created []string) string {
	var existed []string
	for _, t := range tables {
		if !slices.Contains(created, t) {
			existed = append(existed, t)
		}
	}
	switch {
	case len(existed) == 0:
		return fmt.Sprintf("created %d table(s): %s", len(created), strings.Join(created, ", "))
	case len(created) == 0:
		return fmt.Sprintf("table(s) %s already exist; nothing created", strings.Join(existed, ", "))
	default:
		return fmt.Sprintf("created %d table(s): %s; %s already existed", len(created), strings.Join(created, ", "), strings.Join(existed, ", "))
	}
}

func outboxStatsCmd() *cobra.Command {
	var f outboxFlags
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "count pending, failed, published and scheduled rows, and the lag",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ob, db, err := f.open(cmd, accessRead)
			if err != nil {
				return err
			}
			defer db.Close()
			return outboxStats(cmd.Context(), cmd.OutOrStdout(), ob, f.json)
		},
	}
	f.register(cmd.Flags(), false)
	return cmd
}

func outboxStats(ctx context.Context, out io.Writer, ob *forwarder.Outbox, asJSON bool) error {
	s, err := ob.Stats(ctx)
	if err != nil {
		return err
	}
	next := ""
	if !s.NextDueAt.IsZero() {
		next = s.NextDueAt.UTC().Format(time.RFC3339)
	}
	if asJSON {
		return json.NewEncoder(out).Encode(map[string]any{
			"outbox": ob.Name(), "pending": s.Pending, "failed": s.Failed, "published": s.Published,
			"scheduled": s.Scheduled, "next_due_at": next,
			"oldest_pending_age_seconds": s.OldestPendingAge.Seconds(),
		})
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OUTBOX\tPENDING\tFAILED\tPUBLISHED\tSCHEDULED\tNEXT DUE\tLAG")
	if next == "" {
		next = "-"
	}
	fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\n", ob.Name(), s.Pending, s.Failed, s.Published, s.Scheduled, next,
		s.OldestPendingAge.Round(time.Millisecond))
	return tw.Flush()
}

// footer says how many rows a listing showed, and whether --limit cut it.
func footer(out io.Writer, n, limit int, what string) {
	fmt.Fprintf(out, "%d %s row(s)", n, what)
	if n == limit {
		fmt.Fprintf(out, " shown: --limit %d reached, there may be more ('outbox stats' counts them)", limit)
	}
	fmt.Fprintln(out)
}

func outboxScheduledCmd() *cobra.Command {
	var f outboxFlags
	cmd := &cobra.Command{
		Use:   "scheduled",
		Short: "list rows that wait for their due time, soonest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ob, db, err := f.open(cmd, accessRead)
			if err != nil {
				return err
			}
			defer db.Close()
			recs, err := ob.Scheduled(cmd.Context(), f.limit)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.json {
				rows := make([]map[string]any, len(recs))
				for i, r := range recs {
					rows[i] = map[string]any{"event_id": r.EventID, "name": r.Name, "topic": r.Topic,
						"due_at": r.DueAt.UTC().Format(time.RFC3339Nano), "created_at": r.CreatedAt.UTC().Format(time.RFC3339Nano)}
				}
				return json.NewEncoder(out).Encode(rows)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "EVENT ID\tNAME\tTOPIC\tDUE\tIN\tCREATED")
			for _, r := range recs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.EventID, r.Name, r.Topic, r.DueAt.UTC().Format(time.RFC3339),
					time.Until(r.DueAt).Round(time.Second), r.CreatedAt.UTC().Format(time.RFC3339))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			footer(out, len(recs), f.limit, "scheduled")
			return nil
		},
	}
	f.register(cmd.Flags(), true)
	return cmd
}

func outboxListCmd(use, short string, list func(*forwarder.Outbox, context.Context, int) ([]forwarder.Record, error)) *cobra.Command {
	var f outboxFlags
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ob, db, err := f.open(cmd, accessRead)
			if err != nil {
				return err
			}
			defer db.Close()
			recs, err := list(ob, cmd.Context(), f.limit)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.json {
				rows := make([]map[string]any, len(recs))
				for i, r := range recs {
					rows[i] = map[string]any{"event_id": r.EventID, "name": r.Name, "topic": r.Topic,
						"attempts": r.Attempts, "last_error": r.LastError, "created_at": r.CreatedAt.UTC().Format(time.RFC3339Nano)}
				}
				return json.NewEncoder(out).Encode(rows)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "EVENT ID\tNAME\tTOPIC\tATTEMPTS\tCREATED\tLAST ERROR")
			for _, r := range recs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.EventID, r.Name, r.Topic, r.Attempts,
					r.CreatedAt.UTC().Format(time.RFC3339), oneLine(r.LastError))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			footer(out, len(recs), f.limit, use)
			return nil
		},
	}
	f.register(cmd.Flags(), true)
	return cmd
}

func outboxRequeueCmd() *cobra.Command {
	var f outboxFlags
	cmd := &cobra.Command{
		Use:   "requeue EVENT_ID...",
		Short: "move failed rows back to pending, by event id",
		Long: "Move failed rows, by event id, back to pending with a fresh attempt budget; the relay\n" +
			"publishes them before younger rows. Ids of rows that are not failed (pending, published\n" +
			"or unknown) are left alone; the command says how many rows it moved.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("%s: give the event ids to requeue", name(cmd))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ob, db, err := f.open(cmd, accessWrite)
			if err != nil {
				return err
			}
			defer db.Close()
			ids := unique(args)
			n, err := ob.Requeue(cmd.Context(), ids...)
			if err != nil {
				return fmt.Errorf("requeued %d row(s), then: %w", n, err)
			}
			out := cmd.OutOrStdout()
			if f.json {
				return json.NewEncoder(out).Encode(map[string]any{"outbox": ob.Name(), "requeued": n, "ids": len(ids)})
			}
			fmt.Fprintf(out, "outbox %s: requeued %d failed event(s) of the %d id(s) given", ob.Name(), n, len(ids))
			if left := int64(len(ids)) - n; left > 0 {
				fmt.Fprintf(out, "; %d were not failed rows (pending, published or unknown) and were left unchanged", left)
			}
			fmt.Fprintln(out)
			return nil
		},
	}
	f.register(cmd.Flags(), false)
	return cmd
}

func unique(ids []string) []string {
	var out []string
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

func outboxPurgeCmd() *cobra.Command {
	var f outboxFlags
	var olderThan time.Duration
	cmd := &cobra.Command{
		Use:   "purge --older-than DURATION",
		Short: "delete published rows published more than DURATION ago",
		Long:  "Delete published rows that were published more than --older-than ago. Pending and failed\nrows are never deleted.",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if olderThan <= 0 {
				return usagef("%s: --older-than must be a positive duration, e.g. 168h", name(cmd))
			}
			ob, db, err := f.open(cmd, accessWrite)
			if err != nil {
				return err
			}
			defer db.Close()
			n, err := ob.Purge(cmd.Context(), olderThan)
			if err != nil {
				return fmt.Errorf("purged %d row(s), then: %w", n, err)
			}
			out := cmd.OutOrStdout()
			if f.json {
				return json.NewEncoder(out).Encode(map[string]any{"purged": n})
			}
			fmt.Fprintf(out, "purged %d published row(s) older than %s\n", n, olderThan)
			return nil
		},
	}
	f.register(cmd.Flags(), false)
	cmd.Flags().DurationVar(&olderThan, "older-than", 0, "delete rows published more than this `duration` ago (required), e.g. 168h")
	return cmd
}

// forwarderGroup registers --forwarder-group: the consumer group of a
// stock Watermill forwarder's subscriber.
func forwarderGroup(fs *pflag.FlagSet) *string {
	return fs.String("forwarder-group", "", "consumer `group` of the stock forwarder's watermill-sql subscriber (components/forwarder sets none: \"\")")
}

func outboxAdoptCmd() *cobra.Command {
	var f outboxFlags
	var group *string
	cmd := &cobra.Command{
		Use:   "adopt",
		Short: "mark published what a stock Watermill forwarder acknowledged",
		Long: "Mark published the rows a stock Watermill forwarder (consumer group --forwarder-group)\n" +
			"acknowledged on the outbox, so that the relay does not send them again: stop the stock\n" +
			"forwarder, adopt, then start the relay.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ob, db, err := f.open(cmd, accessWrite)
			if err != nil {
				return err
			}
			defer db.Close()
			n, err := ob.AdoptForwarderProgress(cmd.Context(), *group)
			if err != nil {
				return err
			}
			s, err := ob.Stats(cmd.Context())
			if err != nil {
				return fmt.Errorf("marked %d row(s) published, then: %w", n, err)
			}
			out := cmd.OutOrStdout()
			if f.json {
				return json.NewEncoder(out).Encode(map[string]any{
					"outbox": ob.Name(), "forwarder_group": *group, "marked_published": n, "pending": s.Pending, "failed": s.Failed,
				})
			}
			fmt.Fprintf(out, "outbox %s: marked %d row(s) the stock forwarder (consumer group %q) had published as published; %d pending remain",
				ob.Name(), n, *group, s.Pending)
			if s.Failed > 0 {
				fmt.Fprintf(out, ", %d failed", s.Failed)
			}
			fmt.Fprintln(out)
			return nil
		},
	}
	f.register(cmd.Flags(), false)
	group = forwarderGroup(cmd.Flags())
	return cmd
}

func outboxHandOverCmd() *cobra.Command {
	var f outboxFlags
	var group *string
	cmd := &cobra.Command{
		Use:   "handover",
		Short: "set a stock Watermill forwarder to go on where the relay stopped",
		Long: "Set a stock Watermill forwarder (consumer group --forwarder-group) to go on where the relay\n" +
			"stopped: the reverse of adopt. Stop every relay, handover, then start the stock forwarder.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ob, db, err := f.open(cmd, accessWrite)
			if err != nil {
				return err
			}
			defer db.Close()
			resent, err := ob.HandOverToForwarder(cmd.Context(), *group)
			if err != nil {
				return err
			}
			s, err := ob.Stats(cmd.Context())
			if err != nil {
				return fmt.Errorf("handed over, then: %w", err)
			}
			out := cmd.OutOrStdout()
			if f.json {
				return json.NewEncoder(out).Encode(map[string]any{
					"outbox": ob.Name(), "forwarder_group": *group, "resent": resent, "pending": s.Pending, "failed": s.Failed,
				})
			}
			fmt.Fprintf(out, "outbox %s: stock forwarder (consumer group %q) set to go on where the relay stopped; "+
				"it publishes %d pending and %d failed row(s), and again %d row(s) the relay had published after the first of them\n",
				ob.Name(), *group, s.Pending, s.Failed, resent)
			return nil
		},
	}
	f.register(cmd.Flags(), false)
	group = forwarderGroup(cmd.Flags())
	return cmd
}
