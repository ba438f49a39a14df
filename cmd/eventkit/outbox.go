package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/dburl"
)

type outboxFlags struct {
	db, name string
	json     bool
	limit    int
}

func (o *outboxFlags) register(fs *flag.FlagSet, withLimit bool) {
	fs.StringVar(&o.db, "db", envDefault("EVENTKIT_DB", "DATABASE_URL"), "database URL")
	fs.StringVar(&o.name, "outbox", forwarder.OutboxNameDefault, "outbox name")
	fs.BoolVar(&o.json, "json", false, "print JSON")
	if withLimit {
		fs.IntVar(&o.limit, "limit", 100, "at most this many rows")
	}
}

// open opens the database and the outbox (which must have been set up).
func (o *outboxFlags) open() (*forwarder.Outbox, *sql.DB, error) {
	if err := required("db", o.db); err != nil {
		return nil, nil, err
	}
	if o.limit < 0 {
		return nil, nil, usagef("--limit must be ≥ 0")
	}
	db, err := dburl.Open(o.db)
	if err != nil {
		return nil, nil, usagef("--db: %v", err)
	}
	ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: events.NewRegistry(), Name: o.name})
	if err != nil {
		db.Close()
		return nil, nil, usagef("%v", err)
	}
	return ob, db, nil
}

func migrate(ctx context.Context, args []string, out io.Writer) error {
	fs := flags("migrate")
	var dbURL string
	var outboxes, inboxes list
	fs.StringVar(&dbURL, "db", envDefault("EVENTKIT_DB", "DATABASE_URL"), "database URL")
	fs.Var(&outboxes, "outbox", "outbox name (repeatable)")
	fs.Var(&inboxes, "inbox", "inbox table (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("migrate: unexpected argument %q", fs.Arg(0))
	}
	if err := required("db", dbURL); err != nil {
		return err
	}
	if len(outboxes) == 0 && len(inboxes) == 0 {
		outboxes = list{forwarder.OutboxNameDefault}
		inboxes = list{inboxTableDefault}
	}
	db, err := dburl.Open(dbURL)
	if err != nil {
		return usagef("--db: %v", err)
	}
	defer db.Close()
	for _, name := range outboxes {
		ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: events.NewRegistry(), Name: name})
		if err != nil {
			return usagef("%v", err)
		}
		if err := ob.Setup(ctx); err != nil {
			return fmt.Errorf("outbox %s: %w", name, err)
		}
		fmt.Fprintf(out, "outbox %s: table %s ready\n", name, ob.Table())
	}
	for _, table := range inboxes {
		in, err := newInbox(db, table)
		if err != nil {
			return usagef("%v", err)
		}
		if err := in.Setup(ctx); err != nil {
			return fmt.Errorf("inbox %s: %w", table, err)
		}
		fmt.Fprintf(out, "inbox %s: table ready\n", table)
	}
	return nil
}

func outboxStats(ctx context.Context, args []string, out io.Writer) error {
	var f outboxFlags
	fs := flags("outbox stats")
	f.register(fs, false)
	if err := parse(fs, args); err != nil {
		return err
	}
	ob, db, err := f.open()
	if err != nil {
		return err
	}
	defer db.Close()
	s, err := ob.Stats(ctx)
	if err != nil {
		return err
	}
	next := ""
	if !s.NextDueAt.IsZero() {
		next = s.NextDueAt.UTC().Format(time.RFC3339)
	}
	if f.json {
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

// outboxScheduled lists the rows that wait for their due time.
func outboxScheduled(ctx context.Context, args []string, out io.Writer) error {
	var f outboxFlags
	fs := flags("outbox scheduled")
	f.register(fs, true)
	if err := parse(fs, args); err != nil {
		return err
	}
	ob, db, err := f.open()
	if err != nil {
		return err
	}
	defer db.Close()
	recs, err := ob.Scheduled(ctx, f.limit)
	if err != nil {
		return err
	}
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
	return tw.Flush()
}

func outboxPending(ctx context.Context, args []string, out io.Writer) error {
	return outboxRecords(ctx, "outbox pending", args, out, (*forwarder.Outbox).Pending)
}

func outboxFailed(ctx context.Context, args []string, out io.Writer) error {
	return outboxRecords(ctx, "outbox failed", args, out, (*forwarder.Outbox).Failed)
}

func outboxRecords(ctx context.Context, name string, args []string, out io.Writer,
	list func(*forwarder.Outbox, context.Context, int) ([]forwarder.Record, error)) error {
	var f outboxFlags
	fs := flags(name)
	f.register(fs, true)
	if err := parse(fs, args); err != nil {
		return err
	}
	ob, db, err := f.open()
	if err != nil {
		return err
	}
	defer db.Close()
	recs, err := list(ob, ctx, f.limit)
	if err != nil {
		return err
	}
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
	return tw.Flush()
}

func outboxRequeue(ctx context.Context, args []string, out io.Writer) error {
	var f outboxFlags
	fs := flags("outbox requeue")
	f.register(fs, false)
	ids, err := interspersed(fs, args)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return usagef("outbox requeue: give the event ids to requeue")
	}
	ob, db, err := f.open()
	if err != nil {
		return err
	}
	defer db.Close()
	if err := ob.Requeue(ctx, ids...); err != nil {
		return err
	}
	if f.json {
		return json.NewEncoder(out).Encode(map[string]any{"requeued": ids})
	}
	fmt.Fprintf(out, "requeued %d event(s) (ids of rows that were not failed are ignored)\n", len(ids))
	return nil
}

func outboxPurge(ctx context.Context, args []string, out io.Writer) error {
	var f outboxFlags
	var olderThan time.Duration
	fs := flags("outbox purge")
	f.register(fs, false)
	fs.DurationVar(&olderThan, "older-than", 0, "delete rows published more than this long ago")
	if err := parse(fs, args); err != nil {
		return err
	}
	if olderThan <= 0 {
		return usagef("outbox purge: --older-than must be a positive duration, e.g. 168h")
	}
	ob, db, err := f.open()
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := ob.Purge(ctx, olderThan)
	if err != nil {
		return fmt.Errorf("purged %d row(s), then: %w", n, err)
	}
	if f.json {
		return json.NewEncoder(out).Encode(map[string]any{"purged": n})
	}
	fmt.Fprintf(out, "purged %d published row(s) older than %s\n", n, olderThan)
	return nil
}

// forwarderGroup registers --forwarder-group: the consumer group of a
// stock Watermill forwarder's subscriber.
func forwarderGroup(fs *flag.FlagSet) *string {
	return fs.String("forwarder-group", "", `consumer group of the stock forwarder's watermill-sql subscriber (components/forwarder sets none: "")`)
}

func outboxAdopt(ctx context.Context, args []string, out io.Writer) error {
	var f outboxFlags
	fs := flags("outbox adopt")
	f.register(fs, false)
	group := forwarderGroup(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("outbox adopt: unexpected argument %q", fs.Arg(0))
	}
	ob, db, err := f.open()
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := ob.AdoptForwarderProgress(ctx, *group)
	if err != nil {
		return err
	}
	s, err := ob.Stats(ctx)
	if err != nil {
		return fmt.Errorf("marked %d row(s) published, then: %w", n, err)
	}
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
}

func outboxHandOver(ctx context.Context, args []string, out io.Writer) error {
	var f outboxFlags
	fs := flags("outbox handover")
	f.register(fs, false)
	group := forwarderGroup(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("outbox handover: unexpected argument %q", fs.Arg(0))
	}
	ob, db, err := f.open()
	if err != nil {
		return err
	}
	defer db.Close()
	resent, err := ob.HandOverToForwarder(ctx, *group)
	if err != nil {
		return err
	}
	s, err := ob.Stats(ctx)
	if err != nil {
		return fmt.Errorf("handed over, then: %w", err)
	}
	if f.json {
		return json.NewEncoder(out).Encode(map[string]any{
			"outbox": ob.Name(), "forwarder_group": *group, "resent": resent, "pending": s.Pending, "failed": s.Failed,
		})
	}
	fmt.Fprintf(out, "outbox %s: stock forwarder (consumer group %q) set to go on where the relay stopped; "+
		"it publishes %d pending and %d failed row(s), and again %d row(s) the relay had published after the first of them\n",
		ob.Name(), *group, s.Pending, s.Failed, resent)
	return nil
}
