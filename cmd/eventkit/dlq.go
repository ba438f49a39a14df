package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

type dlqFlags struct {
	transport, topic, group, handler, reason string
	olderThan, newerThan, idle               time.Duration
	limit                                    int
	json                                     bool
}

func (d *dlqFlags) parse(name string, args []string) error {
	fs := flags(name)
	fs.StringVar(&d.transport, "transport", envDefault("EVENTKIT_TRANSPORT", "TRANSPORT_URL"), "broker URL")
	fs.StringVar(&d.topic, "topic", "", "dead-letter topic, e.g. orders.order_created.dlq")
	fs.StringVar(&d.group, "group", middleware.DeadLetterGroupDefault, "consumer group owning the dead-letter topic")
	fs.StringVar(&d.handler, "handler", "", "only dead letters of this handler")
	fs.StringVar(&d.reason, "reason", "", "only dead letters with this reason (permanent, retries_exhausted, panic, decode, …)")
	fs.DurationVar(&d.olderThan, "older-than", 0, "only dead letters that failed at least this long ago")
	fs.DurationVar(&d.newerThan, "newer-than", 0, "only dead letters that failed at most this long ago")
	fs.DurationVar(&d.idle, "idle", middleware.ReplayIdleTimeoutDefault, "stop when no message arrived for this long")
	fs.IntVar(&d.limit, "limit", 0, "at most this many dead letters (0: no limit)")
	fs.BoolVar(&d.json, "json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", name, fs.Arg(0))
	}
	if err := required("transport", d.transport); err != nil {
		return err
	}
	if err := required("topic", d.topic); err != nil {
		return err
	}
	if d.limit < 0 || d.olderThan < 0 || d.newerThan < 0 || d.idle <= 0 {
		return usagef("%s: --limit, --older-than and --newer-than must be ≥ 0 and --idle > 0", name)
	}
	return nil
}

func (d *dlqFlags) config() middleware.ReplayConfig {
	return middleware.ReplayConfig{
		Topic: d.topic, Group: d.group, Handler: d.handler, Reason: middleware.Reason(d.reason),
		OlderThan: d.olderThan, NewerThan: d.newerThan, Limit: d.limit, IdleTimeout: d.idle,
		Logger: slog.New(slog.DiscardHandler),
	}
}

func (d *dlqFlags) open(ctx context.Context) (*transports.Transport, error) {
	t, err := transports.Open(ctx, d.transport)
	if err != nil {
		return nil, fmt.Errorf("--transport: %w", err)
	}
	return t, nil
}

func dlqList(ctx context.Context, args []string, out io.Writer) error {
	var d dlqFlags
	if err := d.parse("dlq list", args); err != nil {
		return err
	}
	t, err := d.open(ctx)
	if err != nil {
		return err
	}
	defer t.Close()
	dead, err := middleware.ListDLQ(ctx, t.Subscriber, t.Publisher(), d.config())
	if err != nil {
		return err
	}
	if d.json {
		rows := make([]map[string]any, len(dead))
		for i, x := range dead {
			rows[i] = map[string]any{"event_id": x.EventID, "name": x.Envelope.Name, "handler": x.Handler,
				"reason": x.Reason, "error": x.Error, "attempts": x.Attempts, "delayed_attempts": x.DelayedAttempts, "original_topic": x.OriginalTopic,
				"failed_at": x.FailedAt.UTC().Format(time.RFC3339Nano), "replays": x.Replays,
				"correlation_id": x.Envelope.CorrelationID}
		}
		return json.NewEncoder(out).Encode(rows)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EVENT ID\tNAME\tHANDLER\tREASON\tATTEMPTS\tDELAYED\tFAILED AT\tERROR")
	for _, x := range dead {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", x.EventID, x.Envelope.Name, x.Handler, x.Reason,
			x.Attempts, x.DelayedAttempts, x.FailedAt.UTC().Format(time.RFC3339), oneLine(x.Error))
	}
	return tw.Flush()
}

func dlqReplay(ctx context.Context, args []string, out io.Writer) error {
	var d dlqFlags
	if err := d.parse("dlq replay", args); err != nil {
		return err
	}
	t, err := d.open(ctx)
	if err != nil {
		return err
	}
	defer t.Close()
	res, err := middleware.ReplayDLQ(ctx, t.Subscriber, t.Publisher(), d.config())
	if err != nil {
		return fmt.Errorf("replayed %d, then: %w", res.Replayed, err)
	}
	if d.json {
		return json.NewEncoder(out).Encode(map[string]any{"scanned": res.Scanned, "replayed": res.Replayed, "kept": res.Kept, "invalid": res.Invalid})
	}
	fmt.Fprintf(out, "replayed %d dead letter(s) to their original topics; %d kept in %s (%d not dead letters)\n",
		res.Replayed, res.Kept, d.topic, res.Invalid)
	return nil
}
