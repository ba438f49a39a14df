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

	"github.com/b2131a45/eventkit/forwarder"
)

type outboxRow struct {
	Key, Name, Table, Database string
	Sample                     sample
	Sampled                    bool
	Relay                      forwarder.ActiveRelay
	RelayErr                   string
	Local                      *forwarder.RelayState
	ActivityRows               int64
	ActivityFrom, ActivityTo   time.Time
	Lag, Rate                  chart
}

func (c *Console) outboxesPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.readCtx(r)
	defer cancel()
	c.sample(ctx, false)
	now := time.Now()
	rows := make([]outboxRow, 0, len(c.outboxes))
	for _, o := range c.outboxes {
		row := outboxRow{Key: o.key, Name: o.Outbox.Outbox.Name(), Table: o.Outbox.Outbox.Table(), Database: RedactURL(o.Database)}
		row.Sample, row.Sampled = o.ring.last()
		if a, err := o.Outbox.Outbox.ActiveRelay(ctx); err != nil {
			row.RelayErr = err.Error()
		} else {
			row.Relay = a
		}
		if o.Relay != nil {
			st := o.Relay.State()
			row.Local = &st
		}
		samples := o.ring.all()
		row.ActivityRows, row.ActivityFrom, row.ActivityTo = lastActivity(samples)
		lag, rate := series(samples)
		row.Lag = svgChart("lag (oldest pending row), seconds", "s", lag, c.cfg.History, now)
		row.Rate = svgChart("relay throughput, rows published per second", "/s", rate, c.cfg.History, now)
		rows = append(rows, row)
	}
	p := c.newPage(r, "Outboxes", "outboxes")
	c.live(p)
	p.Data = map[string]any{"Outboxes": rows, "Interval": c.cfg.SampleInterval, "History": c.cfg.History}
	c.render(w, r, http.StatusOK, "outboxes", p)
}

func (c *Console) outboxOf(w http.ResponseWriter, r *http.Request) *outboxState {
	key := r.PathValue("outbox")
	for _, o := range c.outboxes {
		if o.key == key {
			return o
		}
	}
	c.renderError(w, r, http.StatusNotFound, fmt.Errorf("no outbox %q here", key))
	return nil
}

// failedFilter reads a FailedFilter from the query or a form.
func failedFilter(v url.Values) forwarder.FailedFilter {
	f := forwarder.FailedFilter{
		Topic: strings.TrimSpace(v.Get("topic")), Name: strings.TrimSpace(v.Get("name")),
		ErrorContains: v.Get("error"),
	}
	if id := strings.TrimSpace(v.Get("id")); id != "" {
		f.EventIDs = []string{id}
	}
	return f
}

func filterValues(f forwarder.FailedFilter) []kv {
	var out []kv
	for _, x := range [][2]string{{"topic", f.Topic}, {"name", f.Name}, {"error", f.ErrorContains}} {
		if x[1] != "" {
			out = append(out, kv{Key: x[0], Value: shown{Text: x[1]}})
		}
	}
	if len(f.EventIDs) == 1 {
		out = append(out, kv{Key: "id", Value: shown{Text: f.EventIDs[0]}})
	}
	return out
}

func describeFilter(f forwarder.FailedFilter) string {
	var parts []string
	if len(f.EventIDs) == 1 {
		parts = append(parts, "event "+f.EventIDs[0])
	}
	if f.Topic != "" {
		parts = append(parts, "topic "+f.Topic)
	}
	if f.Name != "" {
		parts = append(parts, "event name "+f.Name)
	}
	if f.ErrorContains != "" {
		parts = append(parts, fmt.Sprintf("error containing %q", f.ErrorContains))
	}
	if len(parts) == 0 {
		return "every failed row"
	}
	return "failed rows with " + strings.Join(parts, ", ")
}

type failedItem struct {
	forwarder.FailedRow
	Error string
	Size  int
}

func (c *Console) failedPage(w http.ResponseWriter, r *http.Request) {
	o := c.outboxOf(w, r)
	if o == nil {
		return
	}
	ctx, cancel := c.readCtx(r)
	defer cancel()
	q := r.URL.Query()
	f := failedFilter(q)
	after, _ := strconv.ParseInt(q.Get("after"), 10, 64)
	limit := c.pageSize(r)
	ob := o.Outbox.Outbox
	rows, err := ob.FailedPage(ctx, f, after, limit+1)
	var count int64
	if err == nil {
		count, err = ob.CountFailed(ctx, f)
	}
	if err != nil {
		c.renderError(w, r, http.StatusBadGateway, err)
		return
	}
	more := len(rows) > limit
	rows = rows[:min(len(rows), limit)]
	items := make([]failedItem, len(rows))
	var next string
	for i, x := range rows {
		items[i] = failedItem{FailedRow: x, Error: oneLine(x.LastError, 300), Size: len(x.Payload)}
		next = strconv.FormatInt(x.Offset, 10)
	}
	if !more {
		next = ""
	}
	p := c.newPage(r, "Failed rows of "+ob.Name(), "outboxes")
	p.Data = map[string]any{"Key": o.key, "Name": ob.Name(), "Rows": items, "Count": count, "Next": next,
		"After": after, "Limit": strconv.Itoa(limit), "Topic": f.Topic, "EventName": f.Name, "Error": f.ErrorContains,
		"Filter": describeFilter(f)}
	c.render(w, r, http.StatusOK, "failed", p)
}

func (c *Console) failedRowPage(w http.ResponseWriter, r *http.Request) {
	o := c.outboxOf(w, r)
	if o == nil {
		return
	}
	ctx, cancel := c.readCtx(r)
	defer cancel()
	id := r.PathValue("id")
	rows, err := o.Outbox.Outbox.FailedPage(ctx, forwarder.FailedFilter{EventIDs: []string{id}}, 0, 1)
	if err != nil {
		c.renderError(w, r, http.StatusBadGateway, err)
		return
	}
	if len(rows) == 0 {
		c.renderError(w, r, http.StatusNotFound, fmt.Errorf("no failed row with event id %q in outbox %s (requeued, published or deleted?)", id, o.Outbox.Outbox.Name()))
		return
	}
	x := rows[0]
	p := c.newPage(r, "Failed row "+x.EventID, "outboxes")
	p.Data = map[string]any{"Key": o.key, "Name": o.Outbox.Outbox.Name(), "Row": x,
		"Error": text(x.LastError, c.cfg.MaxPayload), "Payload": c.mask.payload(x.Payload, c.cfg.MaxPayload),
		"PayloadError": x.PayloadError, "Metadata": c.mask.metadata(x.Metadata, 4096)}
	c.render(w, r, http.StatusOK, "failedrow", p)
}

// confirmation is what the confirm page shows before an action.
type confirmation struct {
	Verb, What, Action, Back string
	Count                    int64
	AtLeast                  bool
	Note                     string
	Fields                   []kv
	Examples                 []string
}

func (c *Console) failedConfirm(w http.ResponseWriter, r *http.Request) {
	o := c.outboxOf(w, r)
	if o == nil {
		return
	}
	ctx, cancel := c.readCtx(r)
	defer cancel()
	q := r.URL.Query()
	kind := q.Get("action")
	if kind != "requeue" && kind != "delete" {
		c.renderError(w, r, http.StatusBadRequest, errors.New("action must be requeue or delete"))
		return
	}
	f := failedFilter(q)
	ob := o.Outbox.Outbox
	n, err := ob.CountFailed(ctx, f)
	var examples []string
	if err == nil {
		var rows []forwarder.FailedRow
		rows, err = ob.FailedPage(ctx, f, 0, 5)
		for _, x := range rows {
			examples = append(examples, x.EventID+" "+x.Name+": "+oneLine(x.LastError, 120))
		}
	}
	if err != nil {
		c.renderError(w, r, http.StatusBadGateway, err)
		return
	}
	cf := confirmation{Verb: kind, What: describeFilter(f) + " of outbox " + ob.Name(), Count: n,
		Action: c.path("outboxes", o.key, "failed", kind), Back: c.path("outboxes", o.key, "failed"),
		Fields: append(filterValues(f), kv{Key: "expect", Value: shown{Text: strconv.FormatInt(n, 10)}}), Examples: examples}
	if kind == "requeue" {
		cf.Note = "Requeued rows go back to pending with a fresh attempt budget; the relay publishes them before younger rows."
	} else {
		cf.Note = "Deleted rows are gone: their events are never published."
	}
	p := c.newPage(r, "Confirm: "+kind, "outboxes")
	p.Data = cf
	c.render(w, r, http.StatusOK, "confirm", p)
}

func (c *Console) failedAction(kind string) func(http.ResponseWriter, *http.Request, operator) {
	return func(w http.ResponseWriter, r *http.Request, op operator) {
		o := c.outboxOf(w, r)
		if o == nil {
			return
		}
		f := failedFilter(r.PostForm)
		expect, err := strconv.ParseInt(r.PostForm.Get("expect"), 10, 64)
		if err != nil || expect < 1 {
			c.refuse(w, r, http.StatusBadRequest, errors.New("expect: the count shown before confirming is missing"))
			return
		}
		f.Limit = expect // no more than the operator was shown
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), c.cfg.ActionTimeout)
		defer cancel()
		ob := o.Outbox.Outbox
		var n int64
		if kind == "requeue" {
			n, err = ob.RequeueFailed(ctx, f)
		} else {
			n, err = ob.DeleteFailed(ctx, f)
		}
		msg := fmt.Sprintf("%s %d row(s): %s of outbox %s", map[string]string{"requeue": "requeued", "delete": "deleted"}[kind], n, describeFilter(f), ob.Name())
		attrs := []slog.Attr{slog.String("action", "outbox "+kind), slog.String("outbox", ob.Name()),
			slog.String("filter", describeFilter(f)), slog.Int64("rows", n), slog.Int64("expected", expect)}
		if err != nil {
			msg += ", then: " + err.Error()
			attrs = append(attrs, slog.String("error", err.Error()))
		}
		c.done(w, r, op, c.path("outboxes", o.key, "failed"), msg, attrs...)
	}
}
