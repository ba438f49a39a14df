package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// ReplayIdleTimeoutDefault is the default ReplayConfig.IdleTimeout.
const ReplayIdleTimeoutDefault = 3 * time.Second

// keyScan marks the dead letters a scan put back, so that it knows when it
// has gone round the whole dead-letter topic.
const keyScan = "dlq_scan"

// ReplayConfig selects the dead letters ReplayDLQ republishes and ListDLQ
// lists. Topic is required; the zero value of every other field is its
// documented default. Filters combine with AND.
type ReplayConfig struct {
	// Topic is the dead-letter topic, e.g. "orders.order_created.dlq".
	// Required.
	Topic string
	// Group is the consumer group that owns the dead-letter topic. Defaults
	// to DeadLetterGroupDefault.
	Group string
	// Handler selects the dead letters of one handler (dlq_handler).
	// Defaults to "" (every handler).
	Handler string
	// Reason selects one reason. Defaults to "" (every reason).
	Reason Reason
	// OlderThan selects dead letters that failed at least this long before
	// the scan started. Defaults to 0 (no bound).
	OlderThan time.Duration
	// NewerThan selects dead letters that failed at most this long before
	// the scan started. Defaults to 0 (no bound).
	NewerThan time.Duration
	// Filter, if set, selects further.
	Filter func(DeadLetter) bool
	// Limit stops the scan after this many dead letters were replayed
	// (listed, for ListDLQ). Defaults to 0 (no limit).
	Limit int
	// IdleTimeout ends the scan when no message arrived for this long.
	// Defaults to ReplayIdleTimeoutDefault; on Kafka it must cover the
	// consumer group join.
	IdleTimeout time.Duration
	// Logger receives a line per replayed message. Defaults to
	// slog.Default().
	Logger *slog.Logger
}

func (c ReplayConfig) withDefaults() ReplayConfig {
	if c.Group == "" {
		c.Group = DeadLetterGroupDefault
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = ReplayIdleTimeoutDefault
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c ReplayConfig) validate() error {
	switch {
	case c.Topic == "":
		return errors.New("middleware: ReplayConfig.Topic is required")
	case c.OlderThan < 0:
		return fmt.Errorf("middleware: ReplayConfig.OlderThan must not be negative, got %s", c.OlderThan)
	case c.NewerThan < 0:
		return fmt.Errorf("middleware: ReplayConfig.NewerThan must not be negative, got %s", c.NewerThan)
	case c.OlderThan > 0 && c.NewerThan > 0 && c.NewerThan <= c.OlderThan:
		return fmt.Errorf("middleware: ReplayConfig.NewerThan (%s) must be longer than OlderThan (%s)", c.NewerThan, c.OlderThan)
	case c.Limit < 0:
		return fmt.Errorf("middleware: ReplayConfig.Limit must not be negative, got %d", c.Limit)
	case c.IdleTimeout < 0:
		return fmt.Errorf("middleware: ReplayConfig.IdleTimeout must not be negative, got %s", c.IdleTimeout)
	}
	return nil
}

func (c ReplayConfig) matches(dl DeadLetter, start time.Time) bool {
	switch {
	case c.Handler != "" && dl.Handler != c.Handler,
		c.Reason != "" && dl.Reason != c.Reason,
		c.OlderThan > 0 && dl.FailedAt.After(start.Add(-c.OlderThan)),
		c.NewerThan > 0 && dl.FailedAt.Before(start.Add(-c.NewerThan)):
		return false
	}
	return c.Filter == nil || c.Filter(dl)
}

// ReplayResult counts what a scan did.
type ReplayResult struct {
	// Scanned is how many messages the scan took from the dead-letter topic.
	Scanned int
	// Replayed is how many dead letters were republished to their original
	// topic (ReplayDLQ) or listed (ListDLQ).
	Replayed int
	// Kept is how many messages were put back into the dead-letter topic.
	Kept int
	// Invalid is how many of the kept messages were not dead letters
	// (DeadLetterFromMessage failed).
	Invalid int
}

// ReplayDLQ republishes the dead letters of cfg.Topic that match cfg to
// their original topic (dlq_original_topic) with pub, and returns the
// counts. A replayed message has the original UUID (event id), payload and
// metadata (envelope); the dead-letter record (dlq_reason, dlq_error,
// dlq_attempts, dlq_original_topic, dlq_handler, dlq_failed_at, dlq_stack)
// is stripped and dlq_replays is incremented, so a message that fails again
// is dead-lettered afresh and shows how often it was replayed.
//
// # Semantics
//
// The dead-letter topic is treated as a queue owned by one consumer group,
// cfg.Group, on every transport. The scan subscribes with that group and
// takes every message:
//
//   - a matching dead letter is published to its original topic, then acked;
//   - anything else (another handler, reason or age, or not a dead letter
//     at all) is published back to the dead-letter topic, marked with the
//     scan's id (metadata dlq_scan), then acked. Nothing is dropped.
//   - a message carrying this scan's mark has gone round once: the scan
//     holds it without acking and reads on. The scan ends when no message
//     arrived for IdleTimeout, when Limit dead letters were replayed, or
//     when ctx ends. The subscriber is then closed: held and unread messages
//     stay in the topic for the group.
//
// Per transport: on AMQP the group is the queue bound to the dead-letter
// exchange (PoisonQueueConfig.Subscribers creates it), and kept messages go
// to the back of it. On Kafka and SQL the topic is a log: the group's offset
// moves past what the scan took and kept messages are appended, so the log
// holds older copies that other consumer groups would see; read dead-letter
// topics only with this group (ReplayDLQ, ListDLQ). On Kafka a held message
// blocks only its partition, so the scan still reads the others. The
// in-process memory transport behaves like Kafka.
//
// Delivery is at-least-once: if the process stops between a publish and its
// ack, the message is taken again by the next scan, so a dead letter may be
// replayed twice. Replays are safe because they keep the event id: the
// inbox of each handler on the original topic (Deduplicate) drops what it
// already handled. That also covers the other handlers of the original
// topic, which receive the replayed message too. Run one scan at a time per
// dead-letter topic.
//
// It returns an error if cfg is invalid, the subscriber cannot be created or
// subscribed, or a publish fails (the message being handled is nacked and
// the counts so far are returned). When ctx ends the counts so far are
// returned with ctx's error.
func ReplayDLQ(ctx context.Context, subscribers SubscriberFactory, pub message.Publisher, cfg ReplayConfig) (ReplayResult, error) {
	var res ReplayResult
	err := scan(ctx, subscribers, pub, cfg, &res, func(dl DeadLetter) error {
		m := dl.replayMessage()
		m.SetContext(ctx)
		if err := pub.Publish(dl.OriginalTopic, m); err != nil {
			return fmt.Errorf("middleware: replay %s to %q: %w", dl.EventID, dl.OriginalTopic, err)
		}
		cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "eventkit: dead letter replayed",
			slog.String(AttrEventID, dl.EventID),
			slog.String(AttrEventName, dl.Envelope.Name),
			slog.String(AttrHandler, dl.Handler),
			slog.String("topic", dl.OriginalTopic),
			slog.String("reason", string(dl.Reason)))
		return nil
	})
	return res, err
}

// ListDLQ returns the dead letters of cfg.Topic that match cfg, oldest
// taken first, at most cfg.Limit of them. It scans like ReplayDLQ but puts
// every message back (so the order of the dead-letter topic changes and, on
// a log transport, copies are appended). The returned DeadLetters' Message
// fields are the messages as they were taken.
func ListDLQ(ctx context.Context, subscribers SubscriberFactory, pub message.Publisher, cfg ReplayConfig) ([]DeadLetter, error) {
	var res ReplayResult
	var out []DeadLetter
	err := scan(ctx, subscribers, pub, cfg, &res, func(dl DeadLetter) error {
		out = append(out, dl)
		return errKeep
	})
	return out, err
}

// Browser reads the messages a consumer group has yet to receive on a
// topic without consuming or changing them (up to limit, 0: all):
// transports.Transport.Browse fits.
type Browser func(ctx context.Context, topic, group string, limit int) ([]*message.Message, error)

// BrowseDLQ lists the dead letters of cfg.Topic that match cfg (its filters
// and Limit; IdleTimeout and Logger are not used), read with browse:
// nothing is taken, put back, declared or changed, unlike ListDLQ. The
// whole dead-letter topic is read to apply the filters; messages that are
// not dead letters are counted in the result's Invalid and left out.
func BrowseDLQ(ctx context.Context, browse Browser, cfg ReplayConfig) ([]DeadLetter, ReplayResult, error) {
	var res ReplayResult
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, res, err
	}
	if browse == nil {
		return nil, res, errors.New("middleware: BrowseDLQ needs a Browser")
	}
	limit := 0
	if cfg.Limit > 0 && cfg.Handler == "" && cfg.Reason == "" && cfg.OlderThan == 0 && cfg.NewerThan == 0 && cfg.Filter == nil {
		limit = cfg.Limit // no filter: the first Limit are the answer
	}
	msgs, err := browse(ctx, cfg.Topic, cfg.Group, limit)
	if err != nil {
		return nil, res, fmt.Errorf("middleware: browse %q: %w", cfg.Topic, err)
	}
	start := time.Now()
	var out []DeadLetter
	for _, m := range msgs {
		res.Scanned++
		dl, err := DeadLetterFromMessage(m)
		if err != nil {
			res.Invalid++
			continue
		}
		if !cfg.matches(dl, start) {
			continue
		}
		out = append(out, dl)
		res.Replayed++
		if cfg.Limit > 0 && len(out) == cfg.Limit {
			break
		}
	}
	return out, res, nil
}

// errKeep tells scan to put a selected dead letter back.
var errKeep = errors.New("keep")

func scan(ctx context.Context, subscribers SubscriberFactory, pub message.Publisher, cfg ReplayConfig, res *ReplayResult, take func(DeadLetter) error) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	if subscribers == nil || pub == nil {
		return errors.New("middleware: ReplayDLQ needs a subscriber factory and a publisher")
	}
	sub, err := subscribers(cfg.Group)
	if err != nil {
		return fmt.Errorf("middleware: subscriber for group %q: %w", cfg.Group, err)
	}
	defer func() { _ = sub.Close() }()
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, err := sub.Subscribe(subCtx, cfg.Topic)
	if err != nil {
		return fmt.Errorf("middleware: subscribe to %q: %w", cfg.Topic, err)
	}

	scanID := watermill.NewUUID()
	start := time.Now()
	idle := time.NewTimer(cfg.IdleTimeout)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-idle.C:
			return nil
		case msg, ok := <-msgs:
			if !ok {
				return nil
			}
			idle.Reset(cfg.IdleTimeout)
			if msg.Metadata.Get(keyScan) == scanID {
				continue // gone round: hold it, unacked, until the scan ends
			}
			res.Scanned++
			dl, perr := DeadLetterFromMessage(msg)
			if perr == nil && cfg.matches(dl, start) {
				err := take(dl)
				switch {
				case err == nil:
					msg.Ack()
					res.Replayed++
					if cfg.Limit > 0 && res.Replayed >= cfg.Limit {
						return nil
					}
					continue
				case errors.Is(err, errKeep):
					res.Replayed++
					if err := keep(ctx, pub, cfg.Topic, msg, scanID); err != nil {
						msg.Nack()
						return err
					}
					msg.Ack()
					res.Kept++
					if cfg.Limit > 0 && res.Replayed >= cfg.Limit {
						return nil
					}
					continue
				default:
					msg.Nack()
					return err
				}
			}
			if perr != nil {
				res.Invalid++
			}
			if err := keep(ctx, pub, cfg.Topic, msg, scanID); err != nil {
				msg.Nack()
				return err
			}
			msg.Ack()
			res.Kept++
		}
	}
}

// keep publishes msg back to the dead-letter topic, marked with the scan id.
func keep(ctx context.Context, pub message.Publisher, topic string, msg *message.Message, scanID string) error {
	m := message.NewMessage(msg.UUID, msg.Payload)
	for k, v := range msg.Metadata {
		m.Metadata[k] = v
	}
	m.Metadata[keyScan] = scanID
	m.SetContext(ctx)
	if err := pub.Publish(topic, m); err != nil {
		return fmt.Errorf("middleware: put %s back to %q: %w", msg.UUID, topic, err)
	}
	return nil
}
