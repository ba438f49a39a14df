package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/b2131a45/eventkit/health"
	"github.com/b2131a45/eventkit/middleware"
)

// inboxCache keeps the last inbox counts for SampleInterval: counting reads
// up to a million index entries.
type inboxCache struct {
	mu   sync.Mutex
	at   time.Time
	rows []inboxRow
}

type inboxRow struct {
	Table, Database string
	Stats           middleware.InboxStats
	Handlers        []handlerKeys
	Retention       time.Duration
	OldestAge       time.Duration
	Status, Err     string
	Behind          bool
}

type handlerKeys struct {
	Handler string
	Keys    int64
}

func (c *Console) inboxesPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.readCtx(r)
	defer cancel()
	p := c.newPage(r, "Inboxes", "inboxes")
	c.live(p)
	p.Data = map[string]any{"Inboxes": c.inboxRows(ctx)}
	c.render(w, r, http.StatusOK, "inboxes", p)
}

func (c *Console) inboxRows(ctx context.Context) []inboxRow {
	ic := c.inboxes
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if ic.rows != nil && time.Since(ic.at) < c.cfg.SampleInterval {
		return ic.rows
	}
	rows := make([]inboxRow, 0, len(c.cfg.Inboxes))
	for _, in := range c.cfg.Inboxes {
		row := inboxRow{Table: in.Inbox.Table(), Database: RedactURL(in.Database), Retention: in.Inbox.Retention()}
		st, err := in.Inbox.Stats(ctx, 0)
		if err != nil {
			row.Err = err.Error()
			rows = append(rows, row)
			continue
		}
		row.Stats = st
		for h, n := range st.Handlers {
			row.Handlers = append(row.Handlers, handlerKeys{h, n})
		}
		sort.Slice(row.Handlers, func(i, j int) bool { return row.Handlers[i].Handler < row.Handlers[j].Handler })
		if !st.Oldest.IsZero() {
			row.OldestAge = time.Since(st.Oldest)
		}
		switch late := row.OldestAge - row.Retention; {
		case st.Expired == 0:
			row.Status = "up to date: no key is older than the retention"
		case late > time.Hour:
			row.Behind = true
			row.Status = fmt.Sprintf("behind: %s keys are past the retention, the oldest by %s; is a middleware.Purger running?", num(st.Expired), dur(late))
		default:
			row.Status = fmt.Sprintf("due: %s keys passed the retention in the last %s; the next purge round deletes them", num(st.Expired), dur(late))
		}
		rows = append(rows, row)
	}
	ic.rows, ic.at = rows, time.Now()
	return rows
}

type checkRow struct {
	Name, Status string
	OK           bool
}

// checks are what the health page runs: the configured ones, then the
// transport, and per outbox its database and relay.
func (c *Console) checks() health.Checks {
	checks := health.Checks{}
	for k, v := range c.cfg.Health {
		checks[k] = v
	}
	if c.cfg.Transport != nil {
		checks["transport "+c.cfg.Transport.String()] = c.cfg.Transport.Health
	}
	for _, o := range c.outboxes {
		ob := o.Outbox.Outbox
		checks["outbox "+o.key+": database"] = func(ctx context.Context) error {
			_, err := ob.Lag(ctx)
			return err
		}
		if o.Relay != nil {
			checks["outbox "+o.key+": relay of this process"] = o.Relay.Health
		}
		checks["outbox "+o.key+": an active relay"] = func(ctx context.Context) error {
			a, err := ob.ActiveRelay(ctx)
			if err != nil {
				return err
			}
			if !a.Active {
				return errors.New("no relay holds the outbox's lock: nothing is relayed")
			}
			return nil
		}
	}
	return checks
}

func (c *Console) healthPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), health.TimeoutDefault)
	defer cancel()
	rep, ok := health.Run(ctx, c.checks())
	rows := make([]checkRow, 0, len(rep.Checks))
	for name, st := range rep.Checks {
		rows = append(rows, checkRow{Name: name, Status: oneLine(st, 1000), OK: st == "ok"})
	}
	slices.SortFunc(rows, func(a, b checkRow) int { return strings.Compare(a.Name, b.Name) })
	p := c.newPage(r, "Health", "health")
	c.live(p)
	p.Data = map[string]any{"Checks": rows, "OK": ok}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	c.render(w, r, status, "health", p)
}

// summary is the JSON the pages poll for their live figures: the same
// numbers the pages show, keyed by the data-live attribute of the element
// that shows each.
func (c *Console) summary(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.readCtx(r)
	defer cancel()
	c.sample(ctx, false)
	out := map[string]string{}
	for _, o := range c.outboxes {
		s, ok := o.ring.last()
		if !ok || s.Err != "" {
			continue
		}
		k := "outbox:" + o.key + ":"
		out[k+"pending"] = num(s.Stats.Pending)
		out[k+"failed"] = num(s.Stats.Failed)
		out[k+"scheduled"] = num(s.Stats.Scheduled)
		out[k+"published"] = num(s.Stats.Published)
		out[k+"lag"] = dur(s.Stats.OldestPendingAge)
		out[k+"sampled"] = ago(s.At)
	}
	if c.cfg.Transport != nil && r.URL.Query().Get("dlq") != "" {
		topics, _ := c.dlq.list(ctx)
		for _, t := range topics {
			if n, err := c.cfg.Transport.Depth(ctx, t.Topic, t.Group); err == nil {
				out["dlq:"+t.Topic+":"+t.Group+":depth"] = num(n)
			}
		}
	}
	c.writeJSON(w, http.StatusOK, out)
}

// HTTPCheck returns a check of a health endpoint of another service (such
// as package health serves): healthy on a 2xx answer; otherwise its error
// names the checks that failed, from the JSON report, or the status.
func HTTPCheck(url string) func(context.Context) error {
	client := &http.Client{Timeout: 10 * time.Second}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if resp.StatusCode/100 == 2 {
			return nil
		}
		var rep health.Report
		if json.Unmarshal(body, &rep) == nil && len(rep.Checks) > 0 {
			var failed []string
			for name, st := range rep.Checks {
				if st != "ok" {
					failed = append(failed, name+": "+st)
				}
			}
			slices.Sort(failed)
			return fmt.Errorf("%s: %s", resp.Status, strings.Join(failed, "; "))
		}
		return fmt.Errorf("%s", resp.Status)
	}
}
