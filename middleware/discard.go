package middleware

import (
	"context"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"
)

// DiscardDLQ deletes the dead letters of cfg.Topic that match cfg: it scans
// exactly like ReplayDLQ (same filters, Limit, IdleTimeout, one consumer
// group, the others published back to the dead-letter topic with pub), but
// a matching dead letter is acked without being published anywhere, so it is
// gone for good. It logs one line per deleted message with its event id,
// handler and reason (never the payload), and returns the counts: Replayed
// is how many it deleted.
//
// It is for dead letters that must not be handled (a test event, a poison
// message whose effect was applied by hand). Errors are ReplayDLQ's; when
// ctx ends the counts so far are returned with ctx's error.
func DiscardDLQ(ctx context.Context, subscribers SubscriberFactory, pub message.Publisher, cfg ReplayConfig) (ReplayResult, error) {
	var res ReplayResult
	log := cfg.withDefaults().Logger
	err := scan(ctx, subscribers, pub, cfg, &res, func(dl DeadLetter) error {
		log.LogAttrs(ctx, slog.LevelInfo, "eventkit: dead letter deleted",
			slog.String(AttrEventID, dl.EventID),
			slog.String(AttrEventName, dl.Envelope.Name),
			slog.String(AttrHandler, dl.Handler),
			slog.String("topic", dl.OriginalTopic),
			slog.String("reason", string(dl.Reason)))
		return nil
	})
	return res, err
}
