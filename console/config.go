package console

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/health"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

// Defaults of Config.
const (
	SampleIntervalDefault    = 10 * time.Second
	HistoryDefault           = time.Hour
	PageSizeDefault          = 50
	ScanLimitDefault         = 10_000
	DeadLetterRefreshDefault = 5 * time.Second
	ScanWaitDefault          = 250 * time.Millisecond
	MaxPayloadDefault        = 64 << 10
	SessionTTLDefault        = 8 * time.Hour
	ActionTimeoutDefault     = 5 * time.Minute
	TitleDefault             = "eventkit console"
)

// MaxPageSize is the largest page a request may ask for (?limit=).
const MaxPageSize = 500

// Outbox is an outbox the console shows.
type Outbox struct {
	// Outbox is the outbox. Required.
	Outbox *forwarder.Outbox
	// Relay, if set, is this process's relay of the outbox: its state, its
	// last batch and its Health are shown. Defaults to nil: the relay is
	// known from the database only (Outbox.ActiveRelay).
	Relay *forwarder.Relay
	// Database says where the outbox lives, shown next to it (passwords
	// are masked). Defaults to "".
	Database string
}

// Inbox is an inbox the console shows.
type Inbox struct {
	// Inbox is the inbox. Required.
	Inbox *middleware.SQLInbox
	// Database says where it lives, shown next to it. Defaults to "".
	Database string
}

// DeadLetterTopic is a dead-letter topic the console shows.
type DeadLetterTopic struct {
	// Topic is the dead-letter topic, e.g. "orders.order_created.dlq".
	// Required.
	Topic string
	// Group is the consumer group that owns it. Defaults to
	// middleware.DeadLetterGroupDefault.
	Group string
}

// Config configures the console. Every field's zero value is its documented
// default; with none set the console shows nothing, read-only.
type Config struct {
	// Title heads every page. Defaults to TitleDefault.
	Title string
	// BasePath is where the handler is mounted, e.g. "/console": its routes
	// are BasePath + "/outboxes" and so on, and its cookie is limited to
	// it. Mount the handler at BasePath + "/" without stripping the prefix.
	// Defaults to "" (the root).
	BasePath string
	// Outboxes are shown with their counts, lag, relay and failed rows.
	Outboxes []Outbox
	// Inboxes are shown with their sizes and purge status.
	Inboxes []Inbox
	// Transport is where dead letters are browsed, counted, replayed and
	// deleted, and whose Health is shown. Defaults to nil: no dead letters.
	Transport *transports.Transport
	// DeadLetters are the dead-letter topics shown. Defaults to the
	// dead-letter topic (middleware.DeadLetterTopic) of every topic the
	// outboxes' rows name (Outbox.Topics, read once: it reads the whole
	// table) that exists on Transport for middleware.DeadLetterGroupDefault,
	// looked for again every 5 minutes. A topic first published after the
	// console started is shown after a restart, or when listed here.
	DeadLetters []DeadLetterTopic
	// Health are further checks shown on the health page, e.g. a
	// processor's Health or HTTPCheck of a service's /healthz. The console
	// adds the transport, each outbox's database and relay. Defaults to
	// none.
	Health health.Checks

	// Token turns on actions: an operator who logs in with it (or sends it
	// as "Authorization: Bearer <token>") may requeue, delete and replay.
	// Defaults to "": the console is read-only, every action is refused.
	Token string
	// Private makes every page need the login, not only the actions.
	// Defaults to false: reading needs no token (the console binds to
	// loopback unless told otherwise).
	Private bool
	// Mask lists the payload fields and metadata keys shown as "***": a
	// field name matches at any depth ("email"), a dotted path from the
	// root matches one field ("customer.email", "items.sku" through arrays).
	// With a mask set, a payload that is not JSON is not shown at all.
	// Defaults to none.
	Mask []string
	// Secrets are strings never shown (passwords of the URLs the console
	// was given): every page and answer has them replaced by "xxxxx".
	// Passwords inside URLs (scheme://user:password@) are masked anyway.
	// Secrets shorter than 4 bytes are masked inside URLs only. Defaults to
	// none.
	Secrets []string
	// Logger receives the audit log (one line per action: who, what, how
	// many) and refused requests. Defaults to slog.Default().
	Logger *slog.Logger

	// SampleInterval is how often the outbox counters are sampled for the
	// charts (by Run; a console without Run samples when a page is asked
	// for and the last sample is older). Defaults to SampleIntervalDefault.
	SampleInterval time.Duration
	// History is how long samples are kept and charted. Defaults to
	// HistoryDefault.
	History time.Duration
	// PageSize is how many rows a page lists. Defaults to PageSizeDefault;
	// at most MaxPageSize.
	PageSize int
	// ScanLimit is how many messages of a dead-letter topic one scan reads
	// (browsing, to list and group them): the console never reads more,
	// whatever the topic holds; its depth is counted without reading.
	// Defaults to ScanLimitDefault.
	ScanLimit int
	// DeadLetterRefresh is how long a scan of a dead-letter topic is shown
	// before it is read again. Defaults to DeadLetterRefreshDefault.
	DeadLetterRefresh time.Duration
	// ScanWait is how long a dead-letter page waits for a scan of its
	// topic (which runs in the background) before it shows the last scan,
	// or, before the first, that the topic is being read, and reloads
	// itself. Defaults to ScanWaitDefault.
	ScanWait time.Duration
	// MaxPayload is how many bytes of a payload, an error or a stack a page
	// shows; the rest is cut and counted. Defaults to MaxPayloadDefault.
	MaxPayload int
	// SessionTTL is how long a login lasts. Defaults to SessionTTLDefault.
	SessionTTL time.Duration
	// ActionTimeout bounds one action (a replay scans the whole topic).
	// Defaults to ActionTimeoutDefault.
	ActionTimeout time.Duration
	// ReplayIdleTimeout ends a replay or delete scan when no message
	// arrived for this long (middleware.ReplayConfig.IdleTimeout).
	// Defaults to middleware.ReplayIdleTimeoutDefault.
	ReplayIdleTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.Title == "" {
		c.Title = TitleDefault
	}
	c.BasePath = strings.TrimRight(c.BasePath, "/")
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = SampleIntervalDefault
	}
	if c.History == 0 {
		c.History = HistoryDefault
	}
	if c.PageSize == 0 {
		c.PageSize = PageSizeDefault
	}
	if c.ScanLimit == 0 {
		c.ScanLimit = ScanLimitDefault
	}
	if c.DeadLetterRefresh == 0 {
		c.DeadLetterRefresh = DeadLetterRefreshDefault
	}
	if c.ScanWait == 0 {
		c.ScanWait = ScanWaitDefault
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = MaxPayloadDefault
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = SessionTTLDefault
	}
	if c.ActionTimeout == 0 {
		c.ActionTimeout = ActionTimeoutDefault
	}
	if c.ReplayIdleTimeout == 0 {
		c.ReplayIdleTimeout = middleware.ReplayIdleTimeoutDefault
	}
	c.DeadLetters = slices.Clone(c.DeadLetters)
	c.Mask = slices.Clone(c.Mask)
	for i, d := range c.DeadLetters {
		if d.Group == "" {
			c.DeadLetters[i].Group = middleware.DeadLetterGroupDefault
		}
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.BasePath != "" && !strings.HasPrefix(c.BasePath, "/"):
		return fmt.Errorf("console: Config.BasePath %q must start with /", c.BasePath)
	case strings.ContainsAny(c.BasePath, "{} ?#"):
		return fmt.Errorf("console: Config.BasePath %q must be a plain path", c.BasePath)
	case c.SampleInterval < time.Second:
		return fmt.Errorf("console: Config.SampleInterval %s: at least 1s", c.SampleInterval)
	case c.History < c.SampleInterval:
		return fmt.Errorf("console: Config.History %s: at least SampleInterval (%s)", c.History, c.SampleInterval)
	case c.PageSize < 1 || c.PageSize > MaxPageSize:
		return fmt.Errorf("console: Config.PageSize %d: want 1 to %d", c.PageSize, MaxPageSize)
	case c.ScanLimit < 1:
		return fmt.Errorf("console: Config.ScanLimit %d: must be positive", c.ScanLimit)
	case c.DeadLetterRefresh < 0, c.SessionTTL < 0, c.ActionTimeout < 0, c.ReplayIdleTimeout < 0, c.ScanWait < 0:
		return errors.New("console: Config durations must not be negative")
	case c.MaxPayload < 256:
		return fmt.Errorf("console: Config.MaxPayload %d: at least 256", c.MaxPayload)
	case c.Token != "" && len(c.Token) < 16:
		return errors.New("console: Config.Token is too short: use at least 16 random characters")
	case len(c.DeadLetters) > 0 && c.Transport == nil:
		return errors.New("console: Config.DeadLetters needs Config.Transport")
	}
	seen := map[string]bool{}
	for i, o := range c.Outboxes {
		if o.Outbox == nil {
			return fmt.Errorf("console: Config.Outboxes[%d].Outbox is nil", i)
		}
	}
	for i, in := range c.Inboxes {
		if in.Inbox == nil {
			return fmt.Errorf("console: Config.Inboxes[%d].Inbox is nil", i)
		}
	}
	for i, d := range c.DeadLetters {
		if err := transports.CheckName("topic", d.Topic); err != nil {
			return fmt.Errorf("console: Config.DeadLetters[%d]: %w", i, err)
		}
		if err := transports.CheckName("consumer group", d.Group); err != nil {
			return fmt.Errorf("console: Config.DeadLetters[%d]: %w", i, err)
		}
		if seen[d.Topic+"\x00"+d.Group] {
			return fmt.Errorf("console: Config.DeadLetters[%d]: %s listed twice", i, d.Topic)
		}
		seen[d.Topic+"\x00"+d.Group] = true
	}
	return nil
}
