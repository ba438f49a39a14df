package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
	"github.com/b2131a45/eventkit/transports/amqp"
)

// reasons are the dead-letter reasons PoisonQueue writes.
var reasons = []middleware.Reason{
	middleware.ReasonPanic, middleware.ReasonMissingName, middleware.ReasonMissingID,
	middleware.ReasonUnsupportedVersion, middleware.ReasonDecode, middleware.ReasonUnknownEvent,
	middleware.ReasonPermanent, middleware.ReasonSchema, middleware.ReasonTimeout, middleware.ReasonRetriesExhausted, middleware.ReasonFailed,
}

type dlqFlags struct {
	transport, topic, group, handler, reason string
	olderThan, newerThan, idle               time.Duration
	limit                                    int
	json                                     bool
}

func (d *dlqFlags) register(cmd *cobra.Command) {
	reasonNames := make([]string, len(reasons))
	for i, r := range reasons {
		reasonNames[i] = string(r)
	}
	fs := cmd.Flags()
	fs.StringVar(&d.transport, "transport", "", "broker `URL`: amqp://…, kafka://…, postgres://…, mysql://… (defaults to $EVENTKIT_TRANSPORT, then $TRANSPORT_URL)")
	fs.StringVar(&d.topic, "topic", "", "dead-letter `topic` (required), e.g. orders.order_created.dlq")
	fs.StringVar(&d.group, "group", middleware.DeadLetterGroupDefault, "consumer `group` owning the dead-letter topic")
	fs.StringVar(&d.handler, "handler", "", "only dead letters of this `handler`")
	fs.StringVar(&d.reason, "reason", "", "only dead letters with this `reason`: "+strings.Join(reasonNames, ", "))
	fs.DurationVar(&d.olderThan, "older-than", 0, "only dead letters that failed at least this `duration` ago")
	fs.DurationVar(&d.newerThan, "newer-than", 0, "only dead letters that failed at most this `duration` ago")
	fs.DurationVar(&d.idle, "idle", middleware.ReplayIdleTimeoutDefault, "stop when no message arrived for this `duration`")
	fs.IntVar(&d.limit, "limit", 0, "at most `N` dead letters (0: no limit)")
	fs.BoolVar(&d.json, "json", false, "print JSON")
}

// check validates the flags: every mistake is a usage error, found before
// anything is dialed.
func (d *dlqFlags) check(cmd *cobra.Command) error {
	d.transport = fromEnv(cmd, "transport", d.transport, "EVENTKIT_TRANSPORT", "TRANSPORT_URL")
	if err := required("transport", d.transport); err != nil {
		return err
	}
	if err := required("topic", d.topic); err != nil {
		return err
	}
	if err := transports.CheckName("topic", d.topic); err != nil {
		return usagef("--topic: %v", err)
	}
	if err := transports.CheckName("consumer group", d.group); err != nil {
		return usagef("--group: %v", err)
	}
	if d.reason != "" && !slices.Contains(reasons, middleware.Reason(d.reason)) {
		return usagef("--reason %q: want one of %v", d.reason, reasons)
	}
	if d.limit < 0 || d.olderThan < 0 || d.newerThan < 0 || d.idle <= 0 {
		return usagef("%s: --limit, --older-than and --newer-than must be ≥ 0 and --idle > 0", name(cmd))
	}
	if d.olderThan > 0 && d.newerThan > 0 && d.newerThan <= d.olderThan {
		return usagef("%s: --newer-than (%s) must be longer than --older-than (%s)", name(cmd), d.newerThan, d.olderThan)
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

// open connects to the broker and checks, declaring nothing, that the
// dead-letter topic exists for the group: reading it would otherwise
// declare it (a queue bound to a live exchange, tables, a Kafka topic).
func (d *dlqFlags) open(ctx context.Context) (*transports.Transport, error) {
	t, err := transports.Open(ctx, d.transport)
	if err != nil {
		var ue *transports.URLError
		if errors.As(err, &ue) {
			return nil, usagef("--transport: %v", err)
		}
		return nil, fmt.Errorf("--transport: %w", err)
	}
	found, err := t.Exists(ctx, d.topic, d.group)
	if err != nil {
		t.Close()
		if errors.Is(err, transports.ErrInvalidName) {
			return nil, usagef("%v", err)
		}
		return nil, err
	}
	if !found {
		t.Close()
		return nil, d.missing(t)
	}
	return t, nil
}

// missing is the error for a dead-letter topic that does not exist.
func (d *dlqFlags) missing(t *transports.Transport) error {
	var where string
	switch t.Kind() {
	case transports.KindAMQP:
		where = fmt.Sprintf(" (RabbitMQ has no queue %s)", amqp.QueueName(d.topic, d.group))
	case transports.KindKafka:
		where = " (not in the cluster metadata)"
	case transports.KindPostgres, transports.KindMySQL:
		where = fmt.Sprintf(" (no table watermill_%s)", d.topic)
	case transports.KindMemory:
		where = " (a mem:// transport lives in one process: nothing was published to this one)"
	}
	msg := fmt.Sprintf("dead-letter topic %q does not exist for consumer group %q on %s%s; nothing was read or changed",
		d.topic, d.group, t, where)
	if !strings.HasSuffix(d.topic, middleware.DeadLetterTopicSuffix) {
		msg += fmt.Sprintf(`. %q does not end in %q, so it is probably mistyped: the dead letters of topic %s are in %q`,
			d.topic, middleware.DeadLetterTopicSuffix, d.topic, middleware.DeadLetterTopic(d.topic))
	}
	return errors.New(msg)
}

func dlqCmd() *cobra.Command {
	return group("dlq", "list and replay dead letters",
		"List and replay the dead letters of a dead-letter topic (<topic>.dlq), read with its consumer\n"+
			"group (--group, default "+middleware.DeadLetterGroupDefault+"). Both first check that the topic exists "+
			"for the group,\ndeclaring nothing; when it does not they say so and exit 1.",
		dlqListCmd(), dlqReplayCmd())
}

func dlqListCmd() *cobra.Command {
	var d dlqFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list dead letters with their handler, reason and error",
		Long: "List the dead letters of --topic that match the filters, without taking, moving or changing\n" +
			"any: they are browsed (RabbitMQ: taken unacked and given back in place, marked redelivered;\n" +
			"Kafka: read from the group's offset outside the group; SQL: plain SELECTs). A missing\n" +
			"dead-letter topic is reported, never declared.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := d.check(cmd); err != nil {
				return err
			}
			ctx := cmd.Context()
			t, err := d.open(ctx)
			if err != nil {
				return err
			}
			defer t.Close()
			dead, res, err := middleware.BrowseDLQ(ctx, t.Browse, d.config())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
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
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(out, "%d dead letter(s) listed from %s (group %s) of %d message(s) read, nothing taken or changed", len(dead), d.topic, d.group, res.Scanned)
			if res.Invalid > 0 {
				fmt.Fprintf(out, "; %d message(s) there are not dead letters", res.Invalid)
			}
			if d.limit > 0 && len(dead) == d.limit {
				fmt.Fprintf(out, "; --limit %d reached, there may be more", d.limit)
			}
			fmt.Fprintln(out)
			return nil
		},
	}
	d.register(cmd)
	return cmd
}

func dlqReplayCmd() *cobra.Command {
	var d dlqFlags
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "republish matching dead letters to their original topics",
		Long: "Republish the dead letters of --topic that match the filters to their original topic, with\n" +
			"the same event id (handlers' inboxes drop what they already handled); the others are put\n" +
			"back. Takes the same flags as dlq list. A missing dead-letter topic is reported, never declared.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := d.check(cmd); err != nil {
				return err
			}
			ctx := cmd.Context()
			t, err := d.open(ctx)
			if err != nil {
				return err
			}
			defer t.Close()
			res, err := middleware.ReplayDLQ(ctx, t.Subscriber, t.Publisher(), d.config())
			if err != nil {
				return fmt.Errorf("replayed %d, then: %w", res.Replayed, err)
			}
			out := cmd.OutOrStdout()
			if d.json {
				return json.NewEncoder(out).Encode(map[string]any{"scanned": res.Scanned, "replayed": res.Replayed, "kept": res.Kept, "invalid": res.Invalid})
			}
			fmt.Fprintf(out, "replayed %d dead letter(s) to their original topics; %d kept in %s (%d not dead letters)\n",
				res.Replayed, res.Kept, d.topic, res.Invalid)
			return nil
		},
	}
	d.register(cmd)
	return cmd
}
