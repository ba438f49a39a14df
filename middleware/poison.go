package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/b2131a45/eventkit/events"
)

// Metadata keys of a dead letter. PoisonQueue adds them to the original
// metadata; they are stable API (eventkit dlq list and replay read them).
const (
	// KeyReason is why the message was dead-lettered: a Reason.
	KeyReason = "dlq_reason"
	// KeyError is the handler's last error, at most MaxErrorBytes long.
	KeyError = "dlq_error"
	// KeyAttempts is how many attempts the handler made, in decimal.
	KeyAttempts = "dlq_attempts"
	// KeyOriginalTopic is the topic the message was consumed from.
	KeyOriginalTopic = "dlq_original_topic"
	// KeyHandler is the router handler (consumer group) that failed.
	KeyHandler = "dlq_handler"
	// KeyFailedAt is when the message was dead-lettered, RFC 3339 UTC with
	// nanoseconds.
	KeyFailedAt = "dlq_failed_at"
	// KeyStack is the stack of a recovered panic (ReasonPanic only), at most
	// MaxStackBytes long.
	KeyStack = "dlq_stack"
	// KeyReplays counts how many times ReplayDLQ republished the message. It
	// is kept on the replayed message, so a message that fails again shows
	// its history in the dead-letter topic.
	KeyReplays = "dlq_replays"
)

// Limits on the text PoisonQueue writes into metadata (transports limit
// header sizes). Longer values are cut at a UTF-8 boundary.
const (
	MaxErrorBytes = 4 << 10
	MaxStackBytes = 8 << 10
)

// Reason says why a message was dead-lettered.
type Reason string

// Reasons, in the order PoisonQueue checks them: the first that fits the
// error wins.
const (
	// ReasonPanic: the handler panicked (*PanicError), on the last attempt.
	ReasonPanic Reason = "panic"
	// ReasonMissingName: the message names no event: no name header,
	// CloudEvents type or AMQP type (events.ErrMissingHeader).
	ReasonMissingName Reason = "missing_name"
	// ReasonMissingID: the message has no event id: no event_id header,
	// message UUID, CloudEvents id or AMQP message-id.
	ReasonMissingID Reason = "missing_id"
	// ReasonUnsupportedVersion: the version header is not a version, or
	// the payload version is newer than registered or has no upcaster
	// path (events.ErrUnsupportedVersion).
	ReasonUnsupportedVersion Reason = "unsupported_version"
	// ReasonDecode: the payload does not decode, or an envelope header
	// other than the above is malformed (*events.DecodeError).
	ReasonDecode Reason = "decode"
	// ReasonUnknownEvent: the event name is not registered
	// (events.ErrUnknownEvent).
	ReasonUnknownEvent Reason = "unknown_event"
	// ReasonSchema: the payload does not match the schema of its event: an
	// error in the chain has a SchemaViolation() bool method that returns
	// true (the runtime validation of package contracts).
	ReasonSchema Reason = "schema"
	// ReasonPermanent: any other permanent error (Permanent, or
	// RetryConfig.Retryable said no).
	ReasonPermanent Reason = "permanent"
	// ReasonTimeout: the last attempt ran out of time
	// (context.DeadlineExceeded from Timeout) and retries are spent.
	ReasonTimeout Reason = "timeout"
	// ReasonRetriesExhausted: Retry reached MaxAttempts or MaxElapsed.
	ReasonRetriesExhausted Reason = "retries_exhausted"
	// ReasonFailed: an error with no Retry below PoisonQueue.
	ReasonFailed Reason = "failed"
)

// ReasonOf classifies a handler error as PoisonQueue does.
func ReasonOf(err error) Reason {
	var pe *PanicError
	var de *events.DecodeError
	var re *RetryError
	switch {
	case errors.As(err, &pe):
		return ReasonPanic
	case errors.As(err, &de) && errors.Is(de, events.ErrMissingHeader) && de.Header == events.KeyName:
		return ReasonMissingName
	case errors.As(err, &de) && errors.Is(de, events.ErrMissingHeader) && de.Header == events.KeyEventID:
		return ReasonMissingID
	case errors.Is(err, events.ErrUnsupportedVersion):
		return ReasonUnsupportedVersion
	case errors.As(err, &de):
		return ReasonDecode
	case errors.Is(err, events.ErrUnknownEvent):
		return ReasonUnknownEvent
	case isSchemaViolation(err):
		return ReasonSchema
	case events.IsPermanent(err):
		return ReasonPermanent
	case errors.As(err, &re) && !re.Exhausted:
		return ReasonPermanent
	case errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	case errors.As(err, &re):
		return ReasonRetriesExhausted
	}
	return ReasonFailed
}

// isSchemaViolation reports whether an error in err's chain has a
// SchemaViolation() bool method that returns true. An interface, not a
// type: the validating package sits above this one.
func isSchemaViolation(err error) bool {
	var sv interface{ SchemaViolation() bool }
	return errors.As(err, &sv) && sv.SchemaViolation()
}

// DeadLetterTopicSuffix is appended to a topic to name its dead-letter topic
// by default.
const DeadLetterTopicSuffix = ".dlq"

// DeadLetterTopic is the default PoisonQueueConfig.Topic: topic + ".dlq".
func DeadLetterTopic(topic string) string { return topic + DeadLetterTopicSuffix }

// DeadLetterGroupDefault is the consumer group that owns dead-letter topics:
// PoisonQueue initialises it and ReplayDLQ and ListDLQ consume with it.
const DeadLetterGroupDefault = "eventkit-dlq"

// SubscriberFactory returns a subscriber for a durable consumer group.
// A transports.Transport's Subscriber method and cqrs.SubscriberFactory fit.
type SubscriberFactory func(group string) (message.Subscriber, error)

// PoisonQueueConfig configures PoisonQueue. The zero value of every field is
// its documented default.
type PoisonQueueConfig struct {
	// Topic maps the topic a message was consumed from to its dead-letter
	// topic. Defaults to DeadLetterTopic (topic + ".dlq").
	Topic func(topic string) string
	// Subscribers, when set, is used once per dead-letter topic, before the
	// first dead letter is published to it, to initialise the topic for
	// Group (message.SubscribeInitializer). Set it on AMQP: a fanout
	// exchange with no queue bound drops what is published to it, so the
	// dead-letter queue must exist first. Kafka and SQL keep messages without
	// it; if set there, the subscriber must be able to initialise the topic
	// (watermill-kafka needs InitializeTopicDetails). While initialisation
	// fails, dead letters are not published and their messages are nacked.
	// Defaults to nil (no initialisation).
	Subscribers SubscriberFactory
	// Group is the consumer group initialised with Subscribers. Defaults to
	// DeadLetterGroupDefault; use the same group with ReplayDLQ.
	Group string
	// Logger receives an error line per dead letter. Defaults to
	// slog.Default().
	Logger *slog.Logger
	// OnDeadLetter, if set, is called after each dead letter was published,
	// with the message context and the reason. Use it for metrics.
	OnDeadLetter func(ctx context.Context, reason Reason)
	// Filter, if set, picks the errors to dead-letter: an error for which
	// it returns false is returned as is, and the message nacked. Defaults
	// to nil: every error is dead-lettered.
	Filter func(err error) bool
}

func (c PoisonQueueConfig) withDefaults() PoisonQueueConfig {
	if c.Topic == nil {
		c.Topic = DeadLetterTopic
	}
	if c.Group == "" {
		c.Group = DeadLetterGroupDefault
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// ErrNoTopic is returned (joined with the handler's error, so the message is
// nacked) when PoisonQueue cannot tell which topic a message came from: it
// runs outside a Watermill router handler, or PoisonQueueConfig.Topic
// returned "".
var ErrNoTopic = errors.New("middleware: no dead-letter topic for message")

// DeadLetterError wraps the error of a failed dead-letter publish. It is
// joined with the handler's error and the message is nacked: a message is
// never dropped because its dead letter could not be written.
type DeadLetterError struct {
	Topic string
	Err   error
}

func (e *DeadLetterError) Error() string {
	return fmt.Sprintf("middleware: publish dead letter to %q: %v", e.Topic, e.Err)
}

func (e *DeadLetterError) Unwrap() error { return e.Err }

// PoisonQueue parks messages that cannot be handled in a dead-letter topic.
// See NewPoisonQueue.
type PoisonQueue struct {
	pub      message.Publisher
	cfg      PoisonQueueConfig
	count    atomic.Int64
	initOnce sync.Map // dead-letter topic → *initState
}

type initState struct {
	mu   sync.Mutex
	done bool
}

// NewPoisonQueue returns the PoisonQueue middleware publishing with pub. When
// the handlers below it (Retry included: PoisonQueue must wrap Retry) return
// an error, it publishes a copy of the message to the dead-letter topic and
// acks the original. The copy keeps the UUID (the event id), the payload and
// every metadata key (the envelope), and adds dlq_reason, dlq_error,
// dlq_attempts, dlq_delayed_attempts (the delayed rounds of DelayedRetry,
// 0 without), dlq_original_topic, dlq_handler, dlq_failed_at (and
// dlq_stack for a panic). Original topic and handler come from
// message.SubscribeTopicFromCtx and message.HandlerNameFromCtx.
//
// It does not dead-letter, and returns the error so the message is nacked,
// when:
//
//   - the handling was interrupted (ErrInterrupted, or the message context
//     ended): shutdown is never a reason to dead-letter;
//   - the dead-letter publish fails (a *DeadLetterError is joined to the
//     error) or no dead-letter topic can be named (ErrNoTopic);
//   - DelayedRetry could not delay it because the broker is unavailable
//     (a transient *DelayError): it comes back when the broker does.
//
// It returns an error if pub is nil.
func NewPoisonQueue(pub message.Publisher, cfg PoisonQueueConfig) (*PoisonQueue, error) {
	if pub == nil {
		return nil, errors.New("middleware: PoisonQueue publisher is nil")
	}
	return &PoisonQueue{pub: pub, cfg: cfg.withDefaults()}, nil
}

// DeadLettered returns how many messages were published to dead-letter
// topics.
func (p *PoisonQueue) DeadLettered() int64 { return p.count.Load() }

// Middleware is the message.HandlerMiddleware.
func (p *PoisonQueue) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		ctx := msg.Context()
		msg.SetContext(context.WithValue(ctx, poisonQueueKey{}, true))
		out, err := h(msg)
		msg.SetContext(ctx) // in case an inner middleware left its own
		if err == nil {
			return out, nil
		}
		var de *DelayError
		if isInterrupted(ctx, err) || (errors.As(err, &de) && de.Transient) || (p.cfg.Filter != nil && !p.cfg.Filter(err)) {
			return nil, err
		}
		if dlErr := p.deadLetter(ctx, msg, err); dlErr != nil {
			p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "eventkit: cannot dead-letter message, nacking it",
				append(attrsOf(msg), slog.String("error", err.Error()), slog.String("dlq_error", dlErr.Error()))...)
			return nil, errors.Join(err, dlErr)
		}
		return nil, nil
	}
}

func (p *PoisonQueue) deadLetter(ctx context.Context, msg *message.Message, err error) error {
	topic := message.SubscribeTopicFromCtx(ctx)
	if topic == "" {
		return fmt.Errorf("%w: message has no subscribe topic (not in a router handler?)", ErrNoTopic)
	}
	dlqTopic := p.cfg.Topic(topic)
	if dlqTopic == "" {
		return fmt.Errorf("%w: PoisonQueueConfig.Topic returned \"\" for %q", ErrNoTopic, topic)
	}
	if err := p.initialize(dlqTopic); err != nil {
		return &DeadLetterError{Topic: dlqTopic, Err: err}
	}

	reason := ReasonOf(err)
	attempts := attemptsOf(err)
	id := msg.UUID
	if id == "" {
		// A message with no id (ReasonMissingID) gets one as a dead letter,
		// so that it can be listed, replayed and deleted by id.
		id = watermill.NewUUID()
	}
	dl := message.NewMessage(id, msg.Payload)
	for k, v := range msg.Metadata {
		dl.Metadata[k] = v
	}
	dl.Metadata[KeyReason] = string(reason)
	dl.Metadata[KeyError] = truncate(err.Error(), MaxErrorBytes)
	dl.Metadata[KeyAttempts] = strconv.Itoa(attempts)
	delayed, _ := DelayedAttemptsOf(msg)
	dl.Metadata[KeyDeadLetterDelayedAttempts] = strconv.Itoa(delayed)
	delete(dl.Metadata, events.KeyDeliverAt)
	dl.Metadata[KeyOriginalTopic] = topic
	dl.Metadata[KeyHandler] = message.HandlerNameFromCtx(ctx)
	dl.Metadata[KeyFailedAt] = time.Now().UTC().Format(time.RFC3339Nano)
	delete(dl.Metadata, KeyStack)
	var pe *PanicError
	if errors.As(err, &pe) {
		dl.Metadata[KeyStack] = truncate(string(pe.Stack), MaxStackBytes)
	}
	dl.SetContext(context.WithoutCancel(ctx))
	if err := p.pub.Publish(dlqTopic, dl); err != nil {
		return &DeadLetterError{Topic: dlqTopic, Err: err}
	}
	p.count.Add(1)
	if p.cfg.OnDeadLetter != nil {
		p.cfg.OnDeadLetter(ctx, reason)
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, "dead-lettered: "+string(reason))
	}
	p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "eventkit: message dead-lettered",
		append(attrsOf(msg),
			slog.String("dlq_topic", dlqTopic),
			slog.String("reason", string(reason)),
			slog.Int("attempts", attempts),
			slog.String("error", err.Error()))...)
	return nil
}

type poisonQueueKey struct{}

// UnderPoisonQueue reports whether ctx, a message context, is inside a
// PoisonQueue: an error returned from here is dead-lettered by it. cqrs's
// Processor reads it to leave dead-lettering to the chain.
func UnderPoisonQueue(ctx context.Context) bool {
	v, _ := ctx.Value(poisonQueueKey{}).(bool)
	return v
}

// initialize runs SubscribeInitialize for the dead-letter group once per
// topic. A failure is returned and retried with the next dead letter.
func (p *PoisonQueue) initialize(topic string) error {
	if p.cfg.Subscribers == nil {
		return nil
	}
	v, _ := p.initOnce.LoadOrStore(topic, &initState{})
	st := v.(*initState)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.done {
		return nil
	}
	sub, err := p.cfg.Subscribers(p.cfg.Group)
	if err != nil {
		return fmt.Errorf("subscriber for group %q: %w", p.cfg.Group, err)
	}
	defer func() { _ = sub.Close() }()
	if si, ok := sub.(message.SubscribeInitializer); ok {
		if err := si.SubscribeInitialize(topic); err != nil {
			return fmt.Errorf("initialise %q for group %q: %w", topic, p.cfg.Group, err)
		}
	}
	st.done = true
	return nil
}

// truncate cuts s to at most n bytes at a UTF-8 boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…[truncated]"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
