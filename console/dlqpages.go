package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/middleware"
)

type dlqIndexRow struct {
	Topic, Group string
	Depth        int64
	DepthErr     string
	Snap         *snapshot
}

func (c *Console) dlqIndex(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.readCtx(r)
	defer cancel()
	topics, discoverErr := c.dlq.list(ctx)
	rows := make([]dlqIndexRow, 0, len(topics))
	for _, t := range topics {
		row := dlqIndexRow{Topic: t.Topic, Group: t.Group, Snap: t.snap.Load()}
		if n, err := c.cfg.Transport.Depth(ctx, t.Topic, t.Group); err != nil {
			row.DepthErr = err.Error()
		} else {
			row.Depth = n
		}
		rows = append(rows, row)
	}
	p := c.newPage(r, "Dead letters", "dlq")
	c.live(p)
	p.Data = map[string]any{"Topics": rows, "Configured": len(c.cfg.DeadLetters) > 0, "HasTransport": c.cfg.Transport != nil,
		"DiscoverErr": discoverErr, "Transport": transportName(c)}
	c.render(w, r, http.StatusOK, "dlqindex", p)
}

func transportName(c *Console) string {
	if c.cfg.Transport == nil {
		return ""
	}
	return c.cfg.Transport.String()
}

func (c *Console) topicOf(w http.ResponseWriter, r *http.Request, ctx context.Context) *dlqTopic {
	topic, group := r.PathValue("topic"), r.URL.Query().Get("group")
	if c.cfg.Transport != nil {
		if t := c.dlq.find(ctx, topic, group); t != nil {
			return t
		}
	}
	c.renderError(w, r, http.StatusNotFound, fmt.Errorf("no dead-letter topic %q here", topic))
	return nil
}

func dlqFilterOf(v url.Values) dlqFilter {
	return dlqFilter{ID: strings.TrimSpace(v.Get("id")), Handler: strings.TrimSpace(v.Get("handler")),
		Reason: strings.TrimSpace(v.Get("reason")), Error: v.Get("error"), Group: strings.TrimSpace(v.Get("group_key"))}
}

func (f dlqFilter) fields() []kv {
	var out []kv
	for _, x := range [][2]string{{"id", f.ID}, {"handler", f.Handler}, {"reason", f.Reason}, {"error", f.Error}, {"group_key", f.Group}} {
		if x[1] != "" {
			out = append(out, kv{Key: x[0], Value: shown{Text: x[1]}})
		}
	}
	return out
}

func (c *Console) dlqPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.readCtx(r)
	defer cancel()
	t := c.topicOf(w, r, ctx)
	if t == nil {
		return
	}
	s, scanning := c.scan(ctx, t, r.URL.Query().Get("refresh") != "", c.cfg.ScanWait)
	counting := false
	if s == nil { // the first scan is still reading: its depth if counted, the rest soon
		if s = t.counted.Load(); s == nil {
			s, counting = &snapshot{At: time.Now(), byID: map[string]int{}}, true
		}
	}
	f := dlqFilterOf(r.URL.Query())
	limit := c.pageSize(r)
	pageNo, err := strconv.Atoi(r.URL.Query().Get("page"))
	if err != nil {
		pageNo = 1 // also for a number out of range, which Atoi caps
	}
	pageNo = min(max(pageNo, 1), c.cfg.ScanLimit) // a scan holds at most ScanLimit letters
	var matched int
	var letters []letter
	from := (pageNo - 1) * limit
	for _, l := range s.Letters {
		if !f.letter(l) {
			continue
		}
		if matched >= from && len(letters) < limit {
			letters = append(letters, l)
		}
		matched++
	}
	groups := s.Groups
	if len(groups) > 100 {
		groups = groups[:100]
	}
	p := c.newPage(r, "Dead letters of "+t.Topic, "dlq")
	c.live(p)
	if scanning {
		p.Reload = 2
	}
	p.Data = map[string]any{"Topic": t.Topic, "Group": groupParam(t), "Snap": s, "Scanning": scanning, "Counting": counting, "Letters": letters, "Matched": matched,
		"Page": pageNo, "From": from + 1, "To": from + len(letters), "HasNext": from+len(letters) < matched,
		"Limit": strconv.Itoa(limit), "Filter": f, "Filtered": !f.empty(), "Describe": f.describe(),
		"Groups": groups, "MoreGroups": len(s.Groups) - len(groups), "ScanLimit": c.cfg.ScanLimit,
		"Reasons": reasonNames()}
	c.render(w, r, http.StatusOK, "dlq", p)
}

// groupParam is the ?group= of a topic's URLs ("" for the default group).
func groupParam(t *dlqTopic) string {
	if t.Group == middleware.DeadLetterGroupDefault {
		return ""
	}
	return t.Group
}

func reasonNames() []string {
	return []string{string(middleware.ReasonPanic), string(middleware.ReasonMissingName), string(middleware.ReasonMissingID),
		string(middleware.ReasonUnsupportedVersion), string(middleware.ReasonDecode), string(middleware.ReasonUnknownEvent),
		string(middleware.ReasonPermanent), string(middleware.ReasonSchema), string(middleware.ReasonTimeout),
		string(middleware.ReasonRetriesExhausted), string(middleware.ReasonFailed)}
}

func (c *Console) dlqLetter(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.readCtx(r)
	defer cancel()
	t := c.topicOf(w, r, ctx)
	if t == nil {
		return
	}
	id := r.PathValue("id")
	// Browse as far as the letter was in the last scan (or the scan limit),
	// to read it whole.
	limit := c.cfg.ScanLimit
	if s := t.snap.Load(); s != nil {
		if i, ok := s.byID[id]; ok {
			limit = min(limit, i+1+s.Invalid)
		}
	}
	t.mu.Lock()
	msgs, err := c.cfg.Transport.Browse(ctx, t.Topic, t.Group, limit)
	if err == nil && limit < c.cfg.ScanLimit && !containsID(msgs, id) {
		msgs, err = c.cfg.Transport.Browse(ctx, t.Topic, t.Group, c.cfg.ScanLimit) // it moved
	}
	t.mu.Unlock()
	if err != nil {
		c.renderError(w, r, http.StatusBadGateway, err)
		return
	}
	for _, m := range msgs {
		if m.UUID != id {
			continue
		}
		dl, err := middleware.DeadLetterFromMessage(m)
		if err != nil {
			continue
		}
		l, _ := letterOf(m)
		p := c.newPage(r, "Dead letter "+printable(id), "dlq")
		p.Data = map[string]any{"Topic": t.Topic, "Group": groupParam(t), "L": l,
			"Error": text(dl.Error, c.cfg.MaxPayload), "Stack": text(dl.Stack, c.cfg.MaxPayload),
			"Payload": c.mask.payload(m.Payload, c.cfg.MaxPayload), "Metadata": c.mask.metadata(m.Metadata, 4096)}
		c.render(w, r, http.StatusOK, "letter", p)
		return
	}
	c.renderError(w, r, http.StatusNotFound, fmt.Errorf("no dead letter %q in the first %d messages of %s (replayed or deleted?)", id, c.cfg.ScanLimit, t.Topic))
}

func containsID(msgs []*message.Message, id string) bool {
	for _, m := range msgs {
		if m.UUID == id {
			return true
		}
	}
	return false
}

func (c *Console) dlqConfirm(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.readCtx(r)
	defer cancel()
	t := c.topicOf(w, r, ctx)
	if t == nil {
		return
	}
	kind := r.URL.Query().Get("action")
	if kind != "replay" && kind != "delete" {
		c.renderError(w, r, http.StatusBadRequest, errors.New("action must be replay or delete"))
		return
	}
	f := dlqFilterOf(r.URL.Query())
	s, scanning := c.scan(ctx, t, true, 10*time.Second) // the count shown is the count now
	if scanning {
		c.renderError(w, r, http.StatusServiceUnavailable, fmt.Errorf("%s is still being read: try again in a moment", t.Topic))
		return
	}
	var n int64
	var examples []string
	for _, l := range s.Letters {
		if f.letter(l) {
			n++
			if len(examples) < 5 {
				examples = append(examples, l.EventID+" "+l.Name+" ("+l.Handler+", "+l.Reason+"): "+oneLine(l.Error, 100))
			}
		}
	}
	back := c.path("dlq", t.Topic) + qGroup(t)
	cf := confirmation{Verb: kind, What: f.describe() + " in " + t.Topic, Count: n, AtLeast: s.Truncated,
		Action: c.path("dlq", t.Topic, kind) + qGroup(t), Back: back, Fields: append(f.fields(), kv{Key: "expect", Value: shown{Text: strconv.FormatInt(n, 10)}}),
		Examples: examples}
	if kind == "replay" {
		cf.Note = "Each is published to its original topic with its event id; handlers that already handled it drop it (inbox). " +
			"The others are put back at the end of the dead-letter topic."
	} else {
		cf.Note = "Deleted dead letters are gone: they are never handled. The others are put back at the end of the dead-letter topic."
	}
	if s.Truncated {
		cf.Note += fmt.Sprintf(" Only the first %d messages of the topic were read: at most %d are %sed now; run it again for more.", c.cfg.ScanLimit, n, kind)
	}
	if s.Err != "" {
		c.renderError(w, r, http.StatusBadGateway, errors.New(s.Err))
		return
	}
	p := c.newPage(r, "Confirm: "+kind, "dlq")
	p.Data = cf
	c.render(w, r, http.StatusOK, "confirm", p)
}

func qGroup(t *dlqTopic) string {
	if g := groupParam(t); g != "" {
		return "?group=" + url.QueryEscape(g)
	}
	return ""
}

func (c *Console) dlqAction(kind string) func(http.ResponseWriter, *http.Request, operator) {
	return func(w http.ResponseWriter, r *http.Request, op operator) {
		t := c.topicOf(w, r, r.Context())
		if t == nil {
			return
		}
		f := dlqFilterOf(r.PostForm)
		cfg := f.replayConfig(t)
		expect, err := strconv.Atoi(r.PostForm.Get("expect"))
		if err != nil || expect < 0 {
			c.refuse(w, r, http.StatusBadRequest, errors.New("expect: the count shown before confirming is missing"))
			return
		}
		if expect == 0 {
			c.done(w, r, op, c.path("dlq", t.Topic)+qGroup(t), "nothing to "+kind+": no dead letter matched",
				slog.String("action", "dlq "+kind), slog.String("topic", t.Topic), slog.String("filter", f.describe()), slog.Int("messages", 0))
			return
		}
		cfg.Limit = expect // no more than the operator was shown
		cfg.IdleTimeout = c.cfg.ReplayIdleTimeout
		cfg.Logger = c.cfg.Logger
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), c.cfg.ActionTimeout)
		defer cancel()
		tr := c.cfg.Transport
		t.mu.Lock()
		var res middleware.ReplayResult
		if kind == "replay" {
			res, err = middleware.ReplayDLQ(ctx, tr.Subscriber, tr.Publisher(), cfg)
		} else {
			res, err = middleware.DiscardDLQ(ctx, tr.Subscriber, tr.Publisher(), cfg)
		}
		t.snap.Store(nil)
		t.mu.Unlock()
		verb := map[string]string{"replay": "replayed", "delete": "deleted"}[kind]
		msg := fmt.Sprintf("%s %d of the %d %s in %s (%d messages read, %d put back)", verb, res.Replayed, expect, f.describe(), t.Topic, res.Scanned, res.Kept)
		attrs := []slog.Attr{slog.String("action", "dlq "+kind), slog.String("topic", t.Topic), slog.String("filter", f.describe()),
			slog.Int("messages", res.Replayed), slog.Int("expected", expect), slog.Int("scanned", res.Scanned), slog.Int("kept", res.Kept)}
		if err != nil {
			msg += ", then: " + err.Error()
			attrs = append(attrs, slog.String("error", err.Error()))
		}
		c.done(w, r, op, c.path("dlq", t.Topic)+qGroup(t), msg, attrs...)
	}
}
