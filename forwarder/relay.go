package forwarder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/tracing"
)

// Defaults of RelayConfig.
const (
	RelayBatchSizeDefault        = 1000
	RelayMaxAttemptsDefault      = 5
	RelayPollIntervalDefault     = time.Second
	RelayMinPollIntervalDefault  = 10 * time.Millisecond
	RelayRetryIntervalDefault    = 100 * time.Millisecond
	RelayMaxBackoffDefault       = 10 * time.Second
	RelayTakeoverIntervalDefault = time.Second
	RelayLeaseTTLDefault         = 30 * time.Second
	RelayStopTimeoutDefault      = 10 * time.Second
	RelayGapTimeoutDefault       = time.Second
)

// RelayConfig configures a Relay. The zero value of every field is its
// documented default.
type RelayConfig struct {
	// BatchSize is how many rows the relay reads, publishes and marks at
	// a time. Defaults to RelayBatchSizeDefault; at most 10,000.
	BatchSize int
	// MaxAttempts is how many times the broker may reject a row before it
	// is parked as failed. Outages and back-pressure never count. Defaults
	// to RelayMaxAttemptsDefault.
	MaxAttempts int
	// PollInterval is the longest wait between two reads of an idle outbox.
	// On PostgreSQL with pgx, LISTEN/NOTIFY wakes the relay on commit and
	// this poll is only the safety net. Defaults to RelayPollIntervalDefault.
	PollInterval time.Duration
	// MinPollInterval is the wait after a read that found rows, when nothing
	// wakes the relay (MySQL, SQLite, PostgreSQL without pgx); it doubles on
	// each empty read up to PollInterval. Defaults to
	// RelayMinPollIntervalDefault.
	MinPollInterval time.Duration
	// RetryInterval is the wait before publishing a rejected row again; it
	// doubles with each attempt up to MaxBackoff. It is also the first wait
	// of an outage. Defaults to RelayRetryIntervalDefault.
	RetryInterval time.Duration
	// MaxBackoff caps the waits after rejections and during an outage.
	// Defaults to RelayMaxBackoffDefault.
	MaxBackoff time.Duration
	// TakeoverInterval is how often a standby relay tries to become the
	// active one. Defaults to RelayTakeoverIntervalDefault.
	TakeoverInterval time.Duration
	// LeaseTTL is how long the SQLite lease of the active relay lasts
	// without renewal: a relay that dies is replaced after at most this.
	// Unused on PostgreSQL and MySQL, whose locks die with the connection.
	// Defaults to RelayLeaseTTLDefault; on SQLite it must be at least twice
	// the longer of PollInterval and MaxBackoff.
	LeaseTTL time.Duration
	// StopTimeout bounds how long Run goes on after ctx ends, to finish the
	// in-flight batch: the publish in progress gets this long to be
	// confirmed (its messages' context is cancelled then), and the rows
	// confirmed by then are marked. Defaults to RelayStopTimeoutDefault.
	StopTimeout time.Duration
	// GapTimeout (MySQL) is how long the relay waits for a missing
	// offset before the rows after it: an AUTO_INCREMENT offset is taken
	// before its row is in the index, so rows after a gap wait until the
	// gap fills (an insert in flight) or GapTimeout passes (a rolled-back
	// insert, which never fills; each one delays the relay this long once).
	// Unused on PostgreSQL and SQLite. Defaults to RelayGapTimeoutDefault.
	GapTimeout time.Duration
	// Unavailable reports whether a Publish error means the broker is
	// unavailable (retry later, no attempt counted). Defaults to
	// IsUnavailable.
	Unavailable func(error) bool
	// Logger receives the relay's logs. Defaults to the outbox's logger.
	Logger *slog.Logger
	// TracerProvider traces publishes: one producer "send" span per publish
	// call, linked to the "create" spans of its events. Defaults to the
	// outbox's OutboxConfig.TracerProvider (nil: off).
	TracerProvider trace.TracerProvider
	// MessagingSystem is the messaging.system attribute of the spans.
	// Defaults to the outbox's OutboxConfig.MessagingSystem.
	MessagingSystem string
	// Observer receives batch sizes, publish outcomes and latencies and
	// parked rows, for metrics (a *metrics.Metrics). Defaults to nil
	// (none).
	Observer RelayObserver
	// HealthMaxLag makes Health fail when the oldest pending event has
	// waited longer than this. Defaults to 0: lag not checked.
	HealthMaxLag time.Duration
	// BrokerHealth, if set, is checked by Health too, so that a broker lost
	// while the outbox is idle shows. transports.Transport.Health fits.
	// Defaults to nil: Health knows the broker only from the last publish.
	BrokerHealth func(ctx context.Context) error
}

func (c *RelayConfig) setDefaults(ob *Outbox) {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.BatchSize == 0 {
		c.BatchSize = RelayBatchSizeDefault
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = RelayMaxAttemptsDefault
	}
	def(&c.PollInterval, RelayPollIntervalDefault)
	def(&c.MinPollInterval, min(RelayMinPollIntervalDefault, c.PollInterval))
	def(&c.RetryInterval, RelayRetryIntervalDefault)
	def(&c.MaxBackoff, max(RelayMaxBackoffDefault, c.RetryInterval))
	def(&c.TakeoverInterval, RelayTakeoverIntervalDefault)
	def(&c.LeaseTTL, RelayLeaseTTLDefault)
	def(&c.StopTimeout, RelayStopTimeoutDefault)
	def(&c.GapTimeout, RelayGapTimeoutDefault)
	if c.Unavailable == nil {
		c.Unavailable = IsUnavailable
	}
	if c.Logger == nil {
		c.Logger = ob.cfg.Logger
	}
	if c.TracerProvider == nil {
		c.TracerProvider = ob.cfg.TracerProvider
	}
	if c.MessagingSystem == "" {
		c.MessagingSystem = ob.cfg.MessagingSystem
	}
}

func (c RelayConfig) validate() error {
	bad := func(field string, why string, v any) error {
		return fmt.Errorf("forwarder: RelayConfig.%s %v: %s", field, v, why)
	}
	switch {
	case c.BatchSize < 1 || c.BatchSize > 10000:
		return bad("BatchSize", "want 1 to 10000", c.BatchSize)
	case c.MaxAttempts < 1:
		return bad("MaxAttempts", "must be at least 1", c.MaxAttempts)
	case c.PollInterval < 0:
		return bad("PollInterval", "is negative", c.PollInterval)
	case c.MinPollInterval < 0 || c.MinPollInterval > c.PollInterval:
		return bad("MinPollInterval", fmt.Sprintf("want 0 to PollInterval (%v)", c.PollInterval), c.MinPollInterval)
	case c.RetryInterval < 0:
		return bad("RetryInterval", "is negative", c.RetryInterval)
	case c.MaxBackoff < c.RetryInterval:
		return bad("MaxBackoff", fmt.Sprintf("is below RetryInterval (%v)", c.RetryInterval), c.MaxBackoff)
	case c.TakeoverInterval < 0:
		return bad("TakeoverInterval", "is negative", c.TakeoverInterval)
	case c.StopTimeout < 0:
		return bad("StopTimeout", "is negative", c.StopTimeout)
	case c.GapTimeout < 0:
		return bad("GapTimeout", "is negative", c.GapTimeout)
	case c.HealthMaxLag < 0:
		return bad("HealthMaxLag", "is negative", c.HealthMaxLag)
	}
	return nil
}

// Relay moves committed outbox rows to a broker (seed: OutboxProcessor).
// See the package documentation for its guarantees.
type Relay struct {
	ob      *Outbox
	pub     message.Publisher
	cfg     RelayConfig
	log     *slog.Logger
	id      string
	running atomic.Bool
	tracer  trace.Tracer // nil when tracing is off

	// outageSince is when the current broker outage began (unix nanos), 0
	// when the broker is available; Health reads it.
	outageSince atomic.Int64
	// gaps tracks the settled offset on MySQL.
	gaps gapTracker
}

// NewRelay returns a relay publishing the rows of ob with pub. pub must
// return from Publish only once the broker confirmed the messages (eventkit
// transports do; for watermill-amqp set ConfirmDelivery). It must be safe
// for use by one goroutine at a time; the relay does not close it. See
// IsUnavailable for how the relay reads its errors.
func NewRelay(ob *Outbox, pub message.Publisher, cfg RelayConfig) (*Relay, error) {
	switch {
	case ob == nil:
		return nil, errors.New("forwarder: outbox is nil")
	case pub == nil:
		return nil, errors.New("forwarder: publisher is nil")
	}
	cfg.setDefaults(ob)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if ob.cfg.Dialect == SQLite && cfg.LeaseTTL < 2*max(cfg.PollInterval, cfg.MaxBackoff) {
		// The lease is renewed between rounds; the longest wait between
		// rounds is PollInterval or MaxBackoff.
		return nil, fmt.Errorf("forwarder: RelayConfig.LeaseTTL %v: must be at least twice max(PollInterval, MaxBackoff) (%v)",
			cfg.LeaseTTL, max(cfg.PollInterval, cfg.MaxBackoff))
	}
	id, err := events.NewID()
	if err != nil {
		return nil, fmt.Errorf("forwarder: relay id: %w", err)
	}
	return &Relay{
		ob:     ob,
		pub:    pub,
		cfg:    cfg,
		log:    cfg.Logger.With(slog.String("outbox", ob.cfg.Name), slog.String("relay", id)),
		id:     id,
		tracer: tracing.Tracer(cfg.TracerProvider),
	}, nil
}

// Run relays until ctx ends, then finishes or releases the in-flight batch
// (see RelayConfig.StopTimeout) and returns nil. Several relays may run on
// one outbox, in one process or many: one is active, the others stand by
// and take over when it stops or dies. Database and broker failures are
// logged and retried with capped backoff; they never end Run. Run returns
// ErrRelayRunning if the relay is already running; after it returned it
// may be called again.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRelayRunning
	}
	defer r.running.Store(false)
	defer r.outageSince.Store(0)
	backoff := r.cfg.RetryInterval
	standby := false
	for ctx.Err() == nil {
		l, err := r.acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			r.log.Warn("eventkit: relay cannot reach the outbox database", slogErr(err), slog.Duration("retry_in", backoff))
			sleep(ctx, backoff)
			backoff = min(2*backoff, r.cfg.MaxBackoff)
			continue
		}
		backoff = r.cfg.RetryInterval
		if l == nil {
			if !standby {
				r.log.Info("eventkit: relay standing by: another relay is active")
				standby = true
			}
			sleep(ctx, r.cfg.TakeoverInterval)
			continue
		}
		standby = false
		r.log.Info("eventkit: relay active", slog.Bool("listen", l.listen))
		err = r.lead(ctx, l)
		l.free()
		if err != nil && ctx.Err() == nil {
			r.log.Warn("eventkit: relay stepped down", slogErr(err))
			sleep(ctx, r.cfg.RetryInterval)
		}
	}
	r.log.Info("eventkit: relay stopped")
	return nil
}

// row is one outbox row in flight.
type row struct {
	offset   int64
	xid      string // PostgreSQL transaction_id
	uuid     string
	attempts int
	topic    string
	msg      *message.Message // nil when the payload does not decode
	bad      error            // why it does not
}

// cursorReset is how many consecutive batches the relay reads after a
// cursor before it reads from the start again, so that a row requeued
// while the relay never catches up is still picked up.
const cursorReset = 64

// maxHeldWait caps the polling interval while committed rows wait for an
// older transaction to end.
const maxHeldWait = 100 * time.Millisecond

// lead relays while r is the active relay. It returns nil when ctx ends,
// or the error that ended the term.
//
// The database work overlaps with publishing: while a full batch is being
// published, the next one is read after its last row (the cursor), and
// marking a batch published runs while the next one is published (at most
// one mark in flight, on a pooled connection). A rejection, an outage, a
// short batch, or cursorReset batches in a row drop the read ahead, wait
// for the mark and read from the start again.
func (r *Relay) lead(ctx context.Context, l *leader) (err error) {
	var marking chan error // the mark in flight, nil when none
	waitMark := func() error {
		if marking == nil {
			return nil
		}
		err := <-marking
		marking = nil
		return err
	}
	defer func() {
		// The in-flight mark finishes even when ctx ended (see
		// stopContext); an error of it ends the term like any other.
		if merr := waitMark(); merr != nil && err == nil && ctx.Err() == nil {
			err = merr
		}
	}()

	// The read of the next batch overlaps with publishing this one too: it
	// runs on the leader's connection, which nothing else uses meanwhile.
	var prefetch chan fetched // the read in flight, nil when none
	takePrefetch := func() (fetched, bool) {
		if prefetch == nil {
			return fetched{}, false
		}
		f := <-prefetch
		prefetch = nil
		return f, true
	}
	defer takePrefetch()

	poll := r.cfg.MinPollInterval // adaptive wait when nothing wakes us
	heldWait := time.Millisecond  // wait while committed rows are held back
	outage := time.Duration(0)    // current outage backoff, 0 when none
	var cursor *row               // last row of the previous batch, all confirmed
	streak := 0                   // batches read after a cursor
	var due dueClock              // scheduled rows
	for ctx.Err() == nil {
		if l.renew != nil {
			if err := l.renew(ctx); err != nil {
				return err
			}
		}
		if err := r.promote(ctx, &due); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !retryable(err) {
				return fmt.Errorf("promote scheduled rows: %w", err)
			}
		}
		f, ok := takePrefetch()
		if ok && cursor == nil {
			ok = false // read for a batch that was not all confirmed: drop it
		}
		if !ok {
			if cursor == nil {
				if err := waitMark(); err != nil {
					return err
				}
			}
			l.drain()
			f.batch, f.err = r.fetch(ctx, l.q, cursor)
		}
		batch, err := f.batch, f.err
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if retryable(err) {
				sleep(ctx, r.cfg.MinPollInterval)
				continue
			}
			return fmt.Errorf("read outbox: %w", err)
		}
		if len(batch) == 0 {
			if cursor != nil {
				cursor = nil // caught up: read from the start once marked
				continue
			}
			held := r.ob.cfg.Dialect == MySQL && r.gaps.waiting()
			if r.ob.cfg.Dialect == Postgres {
				if err := scanOne(ctx, l.q, []any{&held}, r.ob.s.held); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("read outbox: %w", err)
				}
			}
			var wait time.Duration
			switch {
			case held:
				// Committed rows wait for an older transaction to end; it
				// may not notify (it wrote no outbox row, or it is in
				// another database of the cluster), so poll, at least every
				// maxHeldWait: one index probe.
				wait = heldWait
				heldWait = min(2*heldWait, maxHeldWait, r.cfg.PollInterval)
			case l.listen:
				wait = r.cfg.PollInterval
			default:
				wait = poll
				poll = min(2*poll, r.cfg.PollInterval)
			}
			if !due.next.IsZero() {
				wait = max(min(wait, time.Until(due.next)), 0)
			}
			if err := r.idle(ctx, l, wait); err != nil {
				return err
			}
			due.checked = time.Time{} // woken: new scheduled rows may be due sooner
			continue
		}
		heldWait = time.Millisecond
		poll = r.cfg.MinPollInterval
		if r.cfg.Observer != nil {
			r.cfg.Observer.BatchRead(r.ob.cfg.Name, len(batch))
		}
		full := len(batch) == r.cfg.BatchSize
		if full && batch[0].attempts == 0 && streak+1 < cursorReset {
			prefetch = make(chan fetched, 1)
			go func(after *row) {
				var f fetched
				f.batch, f.err = r.fetch(ctx, l.q, after)
				prefetch <- f
			}(batch[len(batch)-1])
		}

		res, confirmed, err := r.relayBatch(ctx, batch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := waitMark(); err != nil {
			return err
		}
		if len(confirmed) > 0 {
			marking = r.markAsync(ctx, confirmed)
		}

		streak++
		cursor = nil
		if res.clean && full && streak < cursorReset {
			cursor = batch[len(batch)-1]
		} else {
			streak = 0
		}
		switch {
		case res.outage != nil:
			level := slog.LevelDebug
			if outage == 0 {
				level = slog.LevelWarn // once per outage, not per retry
				r.outageSince.CompareAndSwap(0, time.Now().UnixNano())
			}
			if res.confirmed > 0 {
				// Back-pressure with progress (a queue that drains): keep
				// the wait short instead of escalating it.
				outage = r.cfg.RetryInterval
			} else {
				outage = min(max(2*outage, r.cfg.RetryInterval), r.cfg.MaxBackoff)
			}
			r.log.Log(ctx, level, "eventkit: broker unavailable or pushing back; relay paused",
				slogErr(res.outage), slog.Int("confirmed", res.confirmed), slog.Duration("retry_in", outage))
			sleep(ctx, outage)
			continue
		case outage > 0:
			r.log.Info("eventkit: broker available again; relay resumed")
			outage = 0
		}
		r.outageSince.Store(0) // for Health: this round reached the broker
		if res.retryAttempts > 0 {
			sleep(ctx, min(r.cfg.RetryInterval<<min(res.retryAttempts-1, 20), r.cfg.MaxBackoff))
		}
		// After a short batch (cursor reset) the next round waits for the
		// mark and reads again before it idles: a row committed during the
		// read but held back by an older transaction is then still seen.
	}
	return nil
}

// markAsync marks rows published on a pooled connection and reports the
// outcome on the returned channel.
func (r *Relay) markAsync(ctx context.Context, rows []*row) chan error {
	done := make(chan error, 1)
	mctx, cancel := r.stopContext(ctx)
	go func() {
		defer cancel()
		query, args := r.ob.s.markPublished(rows, time.Now().UnixMicro())
		err := retryBusy(mctx, func() error {
			_, err := r.ob.db.exec(mctx, query, args...)
			return err
		})
		if err != nil {
			// Published but not marked: they are published again later.
			err = fmt.Errorf("mark %d rows published: %w", len(rows), err)
		}
		done <- err
	}()
	return done
}

// idle waits for d, a notification (when listening) or the end of ctx.
func (r *Relay) idle(ctx context.Context, l *leader, d time.Duration) error {
	if !l.listen {
		sleep(ctx, d)
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if _, err := l.sess.waitNotification(wctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("wait for notification: %w", err)
	}
	return nil
}

// retryable reports database errors worth an immediate new read: MySQL
// lock waits and deadlocks, SQLite busy.
func retryable(err error) bool {
	s := err.Error()
	return isBusy(err) || strings.Contains(s, "Error 1205") || strings.Contains(s, "Error 1213")
}

// fetched is the outcome of one read.
type fetched struct {
	batch []*row
	err   error
}

func (r *Relay) fetch(ctx context.Context, q querier, after *row) ([]*row, error) {
	var upTo int64
	if r.ob.cfg.Dialect == MySQL {
		var err error
		if upTo, err = r.gaps.advance(ctx, q, r); err != nil {
			return nil, err
		}
	}
	rs, err := q.query(ctx, r.ob.s.fetch, r.ob.s.fetchArgs(r.cfg.BatchSize, after, upTo)...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	batch := make([]*row, 0, r.cfg.BatchSize)
	var payload []byte
	for rs.Next() {
		rw := &row{}
		if err := rs.Scan(&rw.offset, &rw.xid, &rw.uuid, &payload, &rw.attempts); err != nil {
			return nil, err
		}
		topic, msg, err := unwrap(payload)
		if err != nil {
			rw.bad = fmt.Errorf("undecodable row: %w", err)
		} else {
			rw.topic, rw.msg = topic, msg
		}
		batch = append(batch, rw)
	}
	return batch, rs.Err()
}

// batchResult is the outcome of one round.
type batchResult struct {
	// outage is the error of an unavailable broker that stopped the round;
	// the rows not confirmed stay pending, with no attempt counted.
	outage error
	// retryAttempts is the highest attempt count of a rejected row that
	// stays pending (it is retried after a backoff), 0 when none.
	retryAttempts int
	// confirmed counts the rows the broker confirmed.
	confirmed int
	// clean is true when every row of the batch was confirmed.
	clean bool
}

type rejection struct {
	r   *row
	err error
}

// relayBatch publishes rows and records rejections: a rejected row gets an
// attempt (and is parked at MaxAttempts). It returns the confirmed rows,
// for the caller to mark; the others stay pending.
func (r *Relay) relayBatch(ctx context.Context, batch []*row) (batchResult, []*row, error) {
	// A row the broker rejected before goes alone, first: no younger row
	// overtakes it while it has attempts left.
	n := 0
	for n < len(batch) && batch[n].attempts == 0 {
		n++
	}
	if n == 0 {
		n = 1
	}
	var res batchResult
	var rejected []rejection
	ready := make([]*row, 0, n)
	for _, rw := range batch[:n] {
		if rw.msg == nil {
			// It can never be published: park it at once.
			rejected = append(rejected, rejection{rw, rw.bad})
			continue
		}
		ready = append(ready, rw)
	}

	pubCtx, cancel := r.stopContext(ctx)
	defer cancel()
	var confirmed []*row
	for _, g := range groupByTopic(ready) {
		ok, rej, outage := r.publishGroup(pubCtx, g)
		confirmed = append(confirmed, ok...)
		rejected = append(rejected, rej...)
		if outage != nil {
			res.outage = outage
			break
		}
	}
	res.confirmed = len(confirmed)
	res.clean = len(confirmed) == len(batch)

	for _, rj := range rejected {
		maxAttempts := r.cfg.MaxAttempts
		if rj.r.msg == nil {
			maxAttempts = 1
		}
		text := rj.err.Error()
		if len(text) > 2000 {
			text = text[:2000]
		}
		query, args := r.ob.s.reject(rj.r, text, maxAttempts)
		err := retryBusy(pubCtx, func() error {
			_, err := r.ob.db.exec(pubCtx, query, args...)
			return err
		})
		if err != nil {
			return res, confirmed, fmt.Errorf("record rejection of %s: %w", rj.r.uuid, err)
		}
		attempt := rj.r.attempts + 1
		attrs := []any{slog.String("event_id", rj.r.uuid), slog.String("topic", rj.r.topic),
			slog.Int("attempt", attempt), slogErr(rj.err)}
		if m := rj.r.msg; m != nil {
			attrs = append(attrs, slog.String("event_name", m.Metadata.Get(events.KeyName)),
				slog.String("correlation_id", m.Metadata.Get(events.KeyCorrelationID)))
		}
		if attempt >= maxAttempts {
			r.log.Error("eventkit: event parked as failed", attrs...)
			if r.cfg.Observer != nil {
				r.cfg.Observer.Parked(r.ob.cfg.Name, rj.r.topic)
			}
		} else {
			r.log.Warn("eventkit: broker rejected event; retrying", attrs...)
			res.retryAttempts = max(res.retryAttempts, attempt)
		}
	}
	return res, confirmed, nil
}

// stopContext returns the context of one round's publishes and writes: it
// outlives ctx by StopTimeout, so that a stopping relay finishes its batch.
func (r *Relay) stopContext(ctx context.Context) (context.Context, context.CancelFunc) {
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(r.cfg.StopTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-pctx.Done():
		}
	})
	return pctx, func() {
		stop()
		cancel()
	}
}

// groupByTopic splits rows by topic, keeping their order within a topic;
// topics come in the order of their first row.
func groupByTopic(rows []*row) [][]*row {
	if len(rows) == 0 {
		return nil
	}
	same := true
	for _, rw := range rows[1:] {
		if rw.topic != rows[0].topic {
			same = false
			break
		}
	}
	if same {
		return [][]*row{rows}
	}
	idx := map[string]int{}
	var groups [][]*row
	for _, rw := range rows {
		i, ok := idx[rw.topic]
		if !ok {
			i = len(groups)
			idx[rw.topic] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], rw)
	}
	return groups
}

// publishGroup publishes rows of one topic in one call and sorts them into
// confirmed and rejected; outage is set when the broker was unavailable
// (the rows in neither list stay pending).
func (r *Relay) publishGroup(ctx context.Context, rows []*row) (confirmed []*row, rejected []rejection, outage error) {
	topic := rows[0].topic
	msgs := make([]*message.Message, len(rows))
	for i, rw := range rows {
		rw.msg.SetContext(ctx)
		msgs[i] = rw.msg
	}
	err := r.publish(ctx, topic, msgs...)
	if err == nil {
		return rows, nil, nil
	}
	var nc notConfirmed
	if errors.As(err, &nc) {
		failed := map[string]bool{}
		for _, id := range nc.NotConfirmed() {
			failed[id] = true
		}
		unavailable := r.cfg.Unavailable(err)
		for _, rw := range rows {
			switch {
			case !failed[rw.msg.UUID]:
				confirmed = append(confirmed, rw)
			case unavailable:
				outage = err
			default:
				rejected = append(rejected, rejection{rw, err})
			}
		}
		return confirmed, rejected, outage
	}
	if len(rows) == 1 {
		switch {
		case r.cfg.Unavailable(err):
			return nil, nil, err
		case isMessageFault(err) || rows[0].attempts > 0:
			return nil, []rejection{{rows[0], err}}, nil
		}
		// Nothing shows it is about this message rather than the broker.
		return nil, nil, err
	}
	// The error does not say which messages were confirmed: publish them
	// one by one, up to the first that is not. That finds the culprit of a
	// rejection, and keeps a relay under back-pressure (a stock publisher
	// that stops at the first nack) making progress. Messages delivered by
	// the first call go twice (at least once). During an outage the first
	// single publish fails at once.
	var unattributed []rejection
	for _, rw := range rows {
		err := r.publish(ctx, topic, rw.msg)
		switch {
		case err == nil:
			confirmed = append(confirmed, rw)
			// The broker took a later message: the earlier failures were
			// about those messages.
			rejected = append(rejected, unattributed...)
			unattributed = nil
			continue
		case r.cfg.Unavailable(err):
			return confirmed, rejected, err
		case isMessageFault(err) || rw.attempts > 0:
			rejected = append(rejected, rejection{rw, err})
		default:
			unattributed = append(unattributed, rejection{rw, err})
			if len(unattributed) == 3 {
				return confirmed, rejected, err
			}
		}
	}
	if len(unattributed) > 0 {
		// No later message got through: it may be the broker, not the
		// message. Do not count an attempt.
		return confirmed, rejected, unattributed[0].err
	}
	return confirmed, rejected, nil
}

// publish publishes msgs to topic with the relay's publisher, in a span
// when tracing is on, and reports the outcome to the observer.
func (r *Relay) publish(ctx context.Context, topic string, msgs ...*message.Message) error {
	if r.tracer == nil && r.cfg.Observer == nil {
		return r.pub.Publish(topic, msgs...)
	}
	end := r.tracePublish(ctx, topic, msgs)
	start := time.Now()
	err := r.pub.Publish(topic, msgs...)
	took := time.Since(start)
	end(err)
	if r.cfg.Observer != nil {
		confirmed := len(msgs)
		if err != nil {
			confirmed = 0
			var nc notConfirmed
			if errors.As(err, &nc) {
				confirmed = max(len(msgs)-len(nc.NotConfirmed()), 0)
			}
		}
		r.cfg.Observer.Published(r.ob.cfg.Name, topic, len(msgs), confirmed, took, err)
	}
	return err
}
