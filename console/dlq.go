package console

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/middleware"
)

// discoverEvery is how often the dead-letter topics are looked for again
// when Config.DeadLetters is not set.
const discoverEvery = 5 * time.Minute

// deadLetters holds the dead-letter topics shown and their last scans.
type deadLetters struct {
	c  *Console
	mu sync.Mutex
	// topics, found or configured; each keeps its scan across discoveries.
	topics      []*dlqTopic
	discovered  time.Time
	discoverErr string
	// outboxTopics are the topics the outboxes publish to, read once
	// (Outbox.Topics reads the whole table); their dead-letter topics are
	// looked for every discoverEvery.
	outboxTopics []string
	topicsRead   bool
}

// dlqTopic is one dead-letter topic. Its mutex makes scans and actions
// take turns: a scan does not see what a browse holds (RabbitMQ), and one
// scan or action at a time runs per topic.
type dlqTopic struct {
	DeadLetterTopic
	mu   sync.Mutex
	snap atomic.Pointer[snapshot]
	// counted is the depth the scan in progress counted before reading:
	// what a page shows before the first scan is done.
	counted atomic.Pointer[snapshot]
	// running is closed when the background scan in progress ends; nil
	// when none runs. Guarded by scanMu.
	scanMu  sync.Mutex
	running chan struct{}
}

func newDeadLetters(c *Console) *deadLetters {
	d := &deadLetters{c: c}
	for _, t := range c.cfg.DeadLetters {
		d.topics = append(d.topics, &dlqTopic{DeadLetterTopic: t})
	}
	return d
}

// list returns the topics, looking for them first when they are found, not
// configured, and the last look is old.
func (d *deadLetters) list(ctx context.Context) ([]*dlqTopic, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.c
	if len(c.cfg.DeadLetters) > 0 || c.cfg.Transport == nil || time.Since(d.discovered) < discoverEvery {
		return d.topics, d.discoverErr
	}
	d.discovered = time.Now()
	d.discoverErr = ""
	seen := map[string]bool{}
	for _, t := range d.topics {
		seen[t.Topic] = true
	}
	if !d.topicsRead {
		// Read again at the next look while it fails or finds nothing (an
		// outbox that has published nothing yet is small to read).
		d.outboxTopics, d.topicsRead = nil, true
		for _, o := range c.outboxes {
			topics, err := o.Outbox.Outbox.Topics(ctx, 100)
			if err != nil {
				d.discoverErr = err.Error()
				d.topicsRead = false
				continue
			}
			d.outboxTopics = append(d.outboxTopics, topics...)
		}
		d.topicsRead = d.topicsRead && len(d.outboxTopics) > 0
	}
	for _, t := range d.outboxTopics {
		dt := middleware.DeadLetterTopic(t)
		if strings.HasSuffix(t, middleware.DeadLetterTopicSuffix) || seen[dt] {
			continue
		}
		ok, err := c.cfg.Transport.Exists(ctx, dt, middleware.DeadLetterGroupDefault)
		if err != nil {
			d.discoverErr = err.Error()
			continue
		}
		if ok {
			seen[dt] = true
			d.topics = append(d.topics, &dlqTopic{DeadLetterTopic: DeadLetterTopic{Topic: dt, Group: middleware.DeadLetterGroupDefault}})
		}
	}
	slices.SortFunc(d.topics, func(a, b *dlqTopic) int { return cmp.Compare(a.Topic, b.Topic) })
	return d.topics, d.discoverErr
}

func (d *deadLetters) find(ctx context.Context, topic, group string) *dlqTopic {
	if group == "" {
		group = middleware.DeadLetterGroupDefault
	}
	topics, _ := d.list(ctx)
	for _, t := range topics {
		if t.Topic == topic && t.Group == group {
			return t
		}
	}
	return nil
}

// letter is a dead letter as a scan keeps it: no payload.
type letter struct {
	EventID, Name, Handler, Reason, Error, OriginalTopic, CorrelationID, Group string
	Attempts, DelayedAttempts, Replays, Size                                   int
	FailedAt, OccurredAt                                                       time.Time
	err                                                                        string // the whole error, for filters
}

// group is the dead letters of one handler failing the same way.
type group struct {
	Key, Handler, Reason, Error string
	Count                       int
	First, Last                 time.Time
}

type handlerCount struct {
	Handler string
	Count   int
	Reasons []string
}

// snapshot is one scan of a dead-letter topic.
type snapshot struct {
	At               time.Time
	Took             time.Duration
	Depth            int64
	DepthErr, Err    string
	Scanned, Invalid int
	Truncated        bool // the scan stopped at ScanLimit
	Letters          []letter
	Groups           []group
	Handlers         []handlerCount
	byID             map[string]int
}

// scan returns the topic's last scan when it is younger than
// DeadLetterRefresh (and not force). Otherwise it reads the topic again in
// the background (one scan at a time per topic, after any action on it)
// and waits up to wait for that scan; when it is not done by then, it
// returns the last scan (nil before the first) and true: the page shows
// it, and the next one the new scan. So a page never takes longer than
// wait to show a topic, however long reading it takes.
func (c *Console) scan(ctx context.Context, t *dlqTopic, force bool, wait time.Duration) (*snapshot, bool) {
	last := t.snap.Load()
	if last != nil && !force && time.Since(last.At) < c.cfg.DeadLetterRefresh {
		return last, false
	}
	t.scanMu.Lock()
	done := t.running
	if done != nil && force {
		// A forced scan starts after the one in progress, which may have
		// read the topic before what the caller wants to see; one started
		// meanwhile is recent enough.
		t.scanMu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return last, true
		}
		t.scanMu.Lock()
		done = t.running
	}
	if done == nil {
		done = make(chan struct{})
		t.running = done
		c.bg.Add(1)
		go func() {
			defer c.bg.Done()
			defer close(done)
			sctx, cancel := context.WithTimeout(c.bgCtx, c.cfg.ActionTimeout)
			defer cancel()
			t.mu.Lock()
			t.snap.Store(c.browse(sctx, t))
			t.mu.Unlock()
			t.scanMu.Lock()
			if t.running == done {
				t.running = nil
			}
			t.scanMu.Unlock()
		}()
	}
	t.scanMu.Unlock()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-done:
		return t.snap.Load(), false
	case <-timer.C:
	case <-ctx.Done():
	}
	return last, true
}

// browse reads up to ScanLimit messages of the topic without taking them,
// and its depth (first: RabbitMQ does not count what a browse holds).
func (c *Console) browse(ctx context.Context, t *dlqTopic) *snapshot {
	began := time.Now()
	s := &snapshot{At: began, byID: map[string]int{}}
	tr := c.cfg.Transport
	var err error
	if s.Depth, err = tr.Depth(ctx, t.Topic, t.Group); err != nil {
		s.DepthErr = err.Error()
	}
	t.counted.Store(&snapshot{At: began, Depth: s.Depth, DepthErr: s.DepthErr, byID: map[string]int{}}) // for the pages meanwhile
	msgs, err := tr.Browse(ctx, t.Topic, t.Group, c.cfg.ScanLimit)
	if err != nil {
		s.Err = err.Error()
	}
	s.Scanned = len(msgs)
	s.Truncated = len(msgs) >= c.cfg.ScanLimit
	groups := map[string]*group{}
	handlers := map[string]*handlerCount{}
	for i, m := range msgs {
		l, ok := letterOf(m)
		msgs[i] = nil // let the payloads go
		if !ok {
			s.Invalid++
			continue
		}
		s.byID[l.EventID] = len(s.Letters)
		s.Letters = append(s.Letters, l)
		g := groups[l.Group]
		if g == nil {
			g = &group{Key: l.Group, Handler: l.Handler, Reason: l.Reason, Error: normalizeError(l.err), First: l.FailedAt, Last: l.FailedAt}
			groups[l.Group] = g
		}
		g.Count++
		g.First, g.Last = minTime(g.First, l.FailedAt), maxTime(g.Last, l.FailedAt)
		h := handlers[l.Handler]
		if h == nil {
			h = &handlerCount{Handler: l.Handler}
			handlers[l.Handler] = h
		}
		h.Count++
		if !slices.Contains(h.Reasons, l.Reason) {
			h.Reasons = append(h.Reasons, l.Reason)
		}
	}
	for _, g := range groups {
		s.Groups = append(s.Groups, *g)
	}
	slices.SortFunc(s.Groups, func(a, b group) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Handler, b.Handler), cmp.Compare(a.Key, b.Key))
	})
	for _, h := range handlers {
		s.Handlers = append(s.Handlers, *h)
	}
	slices.SortFunc(s.Handlers, func(a, b handlerCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Handler, b.Handler))
	})
	s.Took = time.Since(began)
	return s
}

func letterOf(m *message.Message) (letter, bool) {
	dl, err := middleware.DeadLetterFromMessage(m)
	if err != nil {
		return letter{}, false
	}
	l := letter{EventID: printable(dl.EventID), Name: printable(dl.Envelope.Name), Handler: printable(dl.Handler),
		Reason: printable(string(dl.Reason)), Error: oneLine(dl.Error, 300), OriginalTopic: printable(dl.OriginalTopic),
		CorrelationID: printable(dl.Envelope.CorrelationID), Attempts: dl.Attempts, DelayedAttempts: dl.DelayedAttempts,
		Replays: dl.Replays, Size: len(m.Payload), FailedAt: dl.FailedAt, OccurredAt: dl.Envelope.OccurredAt}
	l.err = dl.Error[:min(len(dl.Error), 4096)]
	l.Group = groupKey(dl.Handler, string(dl.Reason), dl.Error)
	return l, true
}

// Error normalization for groups: what varies between two failures of the
// same cause (ids, numbers) is replaced.
var (
	uuidPattern = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
	hexPattern  = regexp.MustCompile(`\b[0-9a-fA-F]{16,}\b`)
	numPattern  = regexp.MustCompile(`\d+`)
)

func normalizeError(e string) string {
	e = oneLine(e[:min(len(e), 4096)], 4096)
	e = uuidPattern.ReplaceAllString(e, "‹id›")
	e = hexPattern.ReplaceAllString(e, "‹id›")
	e = numPattern.ReplaceAllString(e, "‹n›")
	return oneLine(e, 240)
}

func groupKey(handler, reason, err string) string {
	h := sha256.Sum256([]byte(handler + "\x00" + reason + "\x00" + normalizeError(err)))
	return hex.EncodeToString(h[:6])
}

// dlqFilter selects dead letters; empty fields select all.
type dlqFilter struct {
	ID, Handler, Reason, Error, Group string
}

func (f dlqFilter) empty() bool { return f == dlqFilter{} }

func (f dlqFilter) matches(id, handler, reason, err, groupKey string) bool {
	return (f.ID == "" || f.ID == id) && (f.Handler == "" || f.Handler == handler) &&
		(f.Reason == "" || f.Reason == reason) && (f.Error == "" || strings.Contains(err, f.Error)) &&
		(f.Group == "" || f.Group == groupKey)
}

func (f dlqFilter) letter(l letter) bool {
	return f.matches(l.EventID, l.Handler, l.Reason, l.err, l.Group)
}

// replayConfig is the filter as a scan takes it.
func (f dlqFilter) replayConfig(t *dlqTopic) middleware.ReplayConfig {
	cfg := middleware.ReplayConfig{Topic: t.Topic, Group: t.Group, Handler: f.Handler, Reason: middleware.Reason(f.Reason)}
	if f.ID != "" || f.Error != "" || f.Group != "" {
		cfg.Filter = func(dl middleware.DeadLetter) bool {
			return f.matches(dl.EventID, dl.Handler, string(dl.Reason), dl.Error, groupKey(dl.Handler, string(dl.Reason), dl.Error))
		}
	}
	return cfg
}

func (f dlqFilter) describe() string {
	var parts []string
	for _, x := range [][2]string{{"event", f.ID}, {"handler", f.Handler}, {"reason", f.Reason}, {"group", f.Group}} {
		if x[1] != "" {
			parts = append(parts, x[0]+" "+x[1])
		}
	}
	if f.Error != "" {
		parts = append(parts, "error containing "+quote(f.Error))
	}
	if len(parts) == 0 {
		return "every dead letter"
	}
	return "dead letters with " + strings.Join(parts, ", ")
}

func quote(s string) string { return "\u201c" + oneLine(s, 100) + "\u201d" }

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
