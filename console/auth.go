package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

const (
	cookieName = "eventkit_console"
	// maxSessions bounds the logins kept; the oldest goes first.
	maxSessions = 1000
	// maxForm bounds the body of a form post.
	maxForm = 64 << 10
)

// Refusals of actions.
var (
	errReadOnly  = errors.New("read-only console: no operator token is configured, so nothing can be changed")
	errNoLogin   = errors.New("log in with the operator token first")
	errCSRF      = errors.New("the form's CSRF token is missing or wrong: reload the page and try again")
	errCrossSite = errors.New("cross-site request refused")
)

// session is one login.
type session struct {
	id, csrf, who string
	expires       time.Time
	flash         string // shown once by the next page
}

// operator is who makes a request: a login, or a bearer token.
type operator struct {
	who    string
	s      *session // nil for a bearer token
	bearer bool
}

type sessions struct {
	mu   sync.Mutex
	byID map[string]*session
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

func (s *sessions) add(who string, ttl time.Duration) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var oldest *session
	for id, x := range s.byID {
		if now.After(x.expires) {
			delete(s.byID, id)
		} else if oldest == nil || x.expires.Before(oldest.expires) {
			oldest = x
		}
	}
	if len(s.byID) >= maxSessions && oldest != nil {
		delete(s.byID, oldest.id)
	}
	x := &session{id: randomHex(32), csrf: randomHex(32), who: who, expires: now.Add(ttl)}
	s.byID[x.id] = x
	return x
}

func (s *sessions) get(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.byID[id]
	if x == nil || time.Now().After(x.expires) {
		delete(s.byID, id)
		return nil
	}
	return x
}

func (s *sessions) drop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

func (s *sessions) setFlash(x *session, msg string) {
	if x == nil {
		return
	}
	s.mu.Lock()
	x.flash = msg
	s.mu.Unlock()
}

func (s *sessions) takeFlash(x *session) string {
	if x == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := x.flash
	x.flash = ""
	return f
}

// tokenOK compares a presented token with the configured one in constant
// time (of the hashes, so that the length is not told either).
func (c *Console) tokenOK(presented string) bool {
	if c.cfg.Token == "" {
		return false
	}
	a := sha256.Sum256([]byte(presented))
	b := sha256.Sum256([]byte(c.cfg.Token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// operatorOf returns who makes r, if anyone logged in or sent the token.
func (c *Console) operatorOf(r *http.Request) (operator, bool) {
	if c.cfg.Token == "" {
		return operator{}, false
	}
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if ok && c.tokenOK(strings.TrimSpace(tok)) {
			return operator{who: "bearer token from " + remote(r), bearer: true}, true
		}
		return operator{}, false
	}
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return operator{}, false
	}
	s := c.sessions.get(ck.Value)
	if s == nil {
		return operator{}, false
	}
	return operator{who: s.who, s: s}, true
}

// sameOrigin refuses cross-site requests: a browser says where a request
// comes from with Sec-Fetch-Site and Origin, which a page cannot forge;
// clients that send neither (curl, scripts) are not browsers tricked by
// another site. Origin "null" (a form posted under a strict referrer
// policy, or from a sandboxed frame) passes only with Sec-Fetch-Site
// same-origin.
func sameOrigin(r *http.Request) error {
	site := r.Header.Get("Sec-Fetch-Site")
	switch site {
	case "", "same-origin", "none":
	default:
		return errCrossSite
	}
	o := r.Header.Get("Origin")
	switch o {
	case "":
		return nil
	case "null":
		if site == "same-origin" {
			return nil
		}
		return errCrossSite
	}
	u, err := url.Parse(o)
	if err != nil || !strings.EqualFold(u.Host, r.Host) {
		return errCrossSite
	}
	return nil
}

func remote(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// refuse answers a request that may not do what it asks, logs it and
// changes nothing.
func (c *Console) refuse(w http.ResponseWriter, r *http.Request, status int, err error) {
	c.cfg.Logger.LogAttrs(r.Context(), slog.LevelWarn, "console: request refused",
		slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.String("remote", remote(r)), slog.Int("status", status), slog.String("why", err.Error()))
	if wantsJSON(r) {
		c.writeJSON(w, status, map[string]any{"error": err.Error()})
		return
	}
	c.renderError(w, r, status, err)
}

// action wraps a handler that changes state: POST only, a token configured,
// same origin, a login (or the bearer token) and, for a login, the CSRF
// token of its session in the form. Anything else is refused (401 or 403)
// before the handler runs.
func (c *Console) action(h func(w http.ResponseWriter, r *http.Request, op operator)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if c.cfg.Token == "" {
			c.refuse(w, r, http.StatusForbidden, errReadOnly)
			return
		}
		if err := sameOrigin(r); err != nil {
			c.refuse(w, r, http.StatusForbidden, err)
			return
		}
		op, ok := c.operatorOf(r)
		if !ok {
			c.refuse(w, r, http.StatusUnauthorized, errNoLogin)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			c.refuse(w, r, http.StatusBadRequest, errors.New("the form does not parse"))
			return
		}
		if !op.bearer {
			got := r.PostForm.Get("csrf")
			if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(op.s.csrf)) != 1 {
				c.refuse(w, r, http.StatusForbidden, errCSRF)
				return
			}
		}
		h(w, r, op)
	}
}

// reader wraps a page: with Config.Private it needs a login too.
func (c *Console) reader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if c.cfg.Private {
			if _, ok := c.operatorOf(r); !ok {
				if wantsJSON(r) {
					c.refuse(w, r, http.StatusUnauthorized, errNoLogin)
					return
				}
				http.Redirect(w, r, c.path("login")+"?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
		}
		h(w, r)
	}
}

func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json") && !strings.Contains(r.Header.Get("Accept"), "text/html")
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	p := c.newPage(r, "Log in", "login")
	p.Data = map[string]string{"Next": safeNext(c, r.URL.Query().Get("next"))}
	c.render(w, r, http.StatusOK, "login", p)
}

// safeNext keeps a redirect target inside the console.
func safeNext(c *Console, next string) string {
	if next == "" || !strings.HasPrefix(next, c.cfg.BasePath+"/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return c.path("outboxes")
	}
	return next
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if c.cfg.Token == "" {
		c.refuse(w, r, http.StatusForbidden, errReadOnly)
		return
	}
	if err := sameOrigin(r); err != nil {
		c.refuse(w, r, http.StatusForbidden, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		c.refuse(w, r, http.StatusBadRequest, errors.New("the form does not parse"))
		return
	}
	if !c.tokenOK(r.PostForm.Get("token")) {
		time.Sleep(300 * time.Millisecond) // slows guessing down
		c.refuse(w, r, http.StatusUnauthorized, errors.New("wrong operator token"))
		return
	}
	name := oneLine(r.PostForm.Get("name"), 64)
	if name == "" {
		name = "operator"
	}
	who := name + " from " + remote(r)
	s := c.sessions.add(who, c.cfg.SessionTTL)
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: s.id, Path: c.cfg.BasePath + "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: int(c.cfg.SessionTTL.Seconds()),
	})
	c.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "console: operator logged in", slog.String("who", who))
	http.Redirect(w, r, safeNext(c, r.PostForm.Get("next")), http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, op operator) {
	if op.s != nil {
		c.sessions.drop(op.s.id)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: c.cfg.BasePath + "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	c.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "console: operator logged out", slog.String("who", op.who))
	http.Redirect(w, r, c.path("outboxes"), http.StatusSeeOther)
}

// done ends an action: the audit line, then the answer (JSON for a bearer
// token, else a redirect to back with the outcome shown once).
func (c *Console) done(w http.ResponseWriter, r *http.Request, op operator, back, msg string, attrs ...slog.Attr) {
	all := append([]slog.Attr{slog.String("who", op.who), slog.String("remote", remote(r))}, attrs...)
	c.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "console: action", all...)
	if op.bearer || wantsJSON(r) {
		out := map[string]any{"result": msg}
		for _, a := range attrs {
			out[a.Key] = a.Value.Any()
		}
		c.writeJSON(w, http.StatusOK, out)
		return
	}
	c.sessions.setFlash(op.s, msg)
	http.Redirect(w, r, back, http.StatusSeeOther)
}
