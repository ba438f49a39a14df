package console

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

// Console is the web console: an http.Handler, and Run, which samples the
// outboxes for the charts while it runs. Make one with New; Handler is New
// for those who only mount it.
type Console struct {
	cfg      Config
	mux      *http.ServeMux
	pages    map[string]*template.Template
	redact   *redactor
	mask     masker
	sessions *sessions
	outboxes []*outboxState
	inboxes  *inboxCache
	dlq      *deadLetters
	started  time.Time
	// bgCtx ends the background scans of dead-letter topics at Close; bg
	// counts them.
	bgCtx  context.Context
	bgStop context.CancelFunc
	bg     sync.WaitGroup
}

// Handler returns the console as an http.Handler, to mount at
// cfg.BasePath + "/" in any service:
//
//	h, err := console.Handler(console.Config{BasePath: "/console", Outboxes: …})
//	mux.Handle("/console/", h)
//
// It starts no goroutine: the outbox counters are sampled for the charts
// when a page is asked for (at most every SampleInterval). Use New and Run
// to sample all the time. It returns an error naming the Config field that
// is invalid.
func Handler(cfg Config) (http.Handler, error) {
	return New(cfg)
}

// New returns the console. See Handler; Run samples in the background.
func New(cfg Config) (*Console, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Console{
		cfg:      cfg,
		mux:      http.NewServeMux(),
		redact:   newRedactor(cfg.Secrets),
		mask:     newMasker(cfg.Mask),
		sessions: &sessions{byID: map[string]*session{}},
		inboxes:  &inboxCache{},
		started:  time.Now(),
	}
	c.bgCtx, c.bgStop = context.WithCancel(context.Background())
	keys := map[string]int{}
	for _, o := range cfg.Outboxes {
		key := o.Outbox.Name()
		if n := keys[key]; n > 0 {
			key = fmt.Sprintf("%s~%d", key, n+1) // the same name in two databases
		}
		keys[o.Outbox.Name()]++
		c.outboxes = append(c.outboxes, &outboxState{Outbox: o, key: key, ring: newRing(int(cfg.History/cfg.SampleInterval) + 1)})
	}
	c.dlq = newDeadLetters(c)
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

// Run samples the outbox counters every SampleInterval until ctx ends,
// then returns nil. It may run at most once at a time; the handler works
// with or without it.
func (c *Console) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.SampleInterval)
	defer t.Stop()
	for {
		c.sample(ctx, true)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Close stops the scans of dead-letter topics that pages started in the
// background (each reads a topic up to ScanLimit messages, within
// ActionTimeout) and waits for them: call it after the server that serves
// the console stopped. Safe to call twice; the handler must not be used
// after it.
func (c *Console) Close() error {
	c.bgStop()
	c.bg.Wait()
	return nil
}

// ServeHTTP serves the console's pages and actions.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin") // no-referrer makes Chromium post forms with Origin: null
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

func (c *Console) routes() {
	b := c.cfg.BasePath
	get := func(p string, h http.HandlerFunc) { c.mux.HandleFunc("GET "+b+p, c.reader(h)) }
	post := func(p string, h func(http.ResponseWriter, *http.Request, operator)) {
		c.mux.HandleFunc("POST "+b+p, c.action(h))
	}
	get("/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, c.path("outboxes"), http.StatusSeeOther)
	})
	c.mux.HandleFunc("GET "+b+"/login", c.loginPage)
	c.mux.HandleFunc("POST "+b+"/login", c.login)
	post("/logout", c.logout)
	get("/outboxes", c.outboxesPage)
	get("/outboxes/{outbox}/failed", c.failedPage)
	get("/outboxes/{outbox}/failed/confirm", c.failedConfirm)
	get("/outboxes/{outbox}/failed/row/{id}", c.failedRowPage)
	post("/outboxes/{outbox}/failed/requeue", c.failedAction("requeue"))
	post("/outboxes/{outbox}/failed/delete", c.failedAction("delete"))
	get("/dlq", c.dlqIndex)
	get("/dlq/{topic}", c.dlqPage)
	get("/dlq/{topic}/confirm", c.dlqConfirm)
	get("/dlq/{topic}/letter/{id}", c.dlqLetter)
	post("/dlq/{topic}/replay", c.dlqAction("replay"))
	post("/dlq/{topic}/delete", c.dlqAction("delete"))
	get("/inboxes", c.inboxesPage)
	get("/health", c.healthPage)
	get("/api/summary", c.summary)
	c.mux.HandleFunc(b+"/", func(w http.ResponseWriter, r *http.Request) {
		c.renderError(w, r, http.StatusNotFound, fmt.Errorf("no page %s", r.URL.Path))
	})
}

// path returns the console URL of parts, each escaped as one segment.
func (c *Console) path(parts ...string) string {
	var b strings.Builder
	b.WriteString(c.cfg.BasePath)
	for _, p := range parts {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(p))
	}
	return b.String()
}

// page is what every template gets.
type page struct {
	Title, Heading, Nav string
	Base, Nonce, CSRF   string
	Operator, Flash     string
	CanAct, LoggedIn    bool
	Private             bool
	Refresh             int // seconds of the no-JavaScript refresh, 0: none
	Reload              int // seconds until the page reloads, with or without JavaScript, 0: never
	LiveEvery           int // milliseconds between live updates, 0: none
	Data                any
}

func (c *Console) newPage(r *http.Request, heading, nav string) *page {
	p := &page{Title: c.cfg.Title, Heading: heading, Nav: nav, Base: c.cfg.BasePath,
		CanAct: c.cfg.Token != "", Private: c.cfg.Private, Nonce: randomHex(16)}
	if op, ok := c.operatorOf(r); ok && op.s != nil {
		p.LoggedIn, p.Operator, p.CSRF = true, op.who, op.s.csrf
		p.Flash = c.sessions.takeFlash(op.s)
	}
	return p
}

// live makes a page refresh its figures: every SampleInterval (at least
// 2 s) with a small script, every 30 s without JavaScript.
func (c *Console) live(p *page) {
	p.Refresh = 30
	p.LiveEvery = int(max(c.cfg.SampleInterval, 2*time.Second).Milliseconds())
}

func (c *Console) parseTemplates() error {
	funcs := template.FuncMap{
		"url": c.path,
		"q": func(kv ...string) string {
			v := url.Values{}
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i+1] != "" {
					v.Set(kv[i], kv[i+1])
				}
			}
			if len(v) == 0 {
				return ""
			}
			return "?" + v.Encode()
		},
		"num":   num,
		"at":    func(t time.Time) string { return at(t) },
		"ago":   ago,
		"dur":   dur,
		"line":  func(s string) string { return oneLine(s, 200) },
		"short": func(s string, n int) string { return oneLine(s, n) },
		"itoa":  strconv.Itoa,
		"i64":   func(n int64) string { return strconv.FormatInt(n, 10) },
		"add1":  func(n int) int { return n + 1 },
		"sub1":  func(n int) int { return n - 1 },
	}
	c.pages = map[string]*template.Template{}
	for _, name := range []string{"outboxes", "failed", "failedrow", "confirm", "dlqindex", "dlq", "letter", "inboxes", "health", "login", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("console: template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	return nil
}

// render writes a page, secrets removed, with a Content-Security-Policy
// that lets only its own inline style and script (by nonce) run.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	var buf bytes.Buffer
	if err := c.pages[name].Execute(&buf, p); err != nil {
		c.cfg.Logger.LogAttrs(r.Context(), slog.LevelError, "console: page failed", slog.String("page", name), slog.String("error", c.redact.string(err.Error())))
		http.Error(w, "the page failed; see the console's log", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; img-src 'self' data:; connect-src 'self'; form-action 'self'; "+
		"frame-ancestors 'none'; base-uri 'none'; style-src 'nonce-"+p.Nonce+"'; script-src 'nonce-"+p.Nonce+"'")
	w.WriteHeader(status)
	_, _ = w.Write(c.redact.bytes(buf.Bytes()))
}

func (c *Console) renderError(w http.ResponseWriter, r *http.Request, status int, err error) {
	p := c.newPage(r, http.StatusText(status), "")
	p.Data = map[string]any{"Status": status, "Error": oneLine(err.Error(), 2000)}
	c.render(w, r, status, "error", p)
}

func (c *Console) writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "cannot encode", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(c.redact.bytes(b))
}

// ---- formatting -------------------------------------------------------------

func num(n any) string {
	var v int64
	switch x := n.(type) {
	case int:
		v = int64(x)
	case int64:
		v = x
	default:
		return fmt.Sprint(n)
	}
	s := strconv.FormatInt(v, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, d := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func at(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	d := time.Since(t)
	if d < 0 {
		return "in " + dur(-d)
	}
	return dur(d) + " ago"
}

func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < 48*time.Hour:
		return d.Round(time.Second).String()
	default:
		return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// pageSize reads ?limit=, bounded.
func (c *Console) pageSize(r *http.Request) int {
	n, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || n < 1 {
		return c.cfg.PageSize
	}
	return min(n, MaxPageSize)
}

// ctx bounds what a page reads.
func (c *Console) readCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 10*time.Second)
}
