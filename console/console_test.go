package console_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/console"
	"github.com/b2131a45/eventkit/middleware"
)

// seed writes 6 rows (2 parked as failed, 1 published, 3 pending) and 3
// dead letters in two groups.
func (b *bundle) seed() {
	b.t.Helper()
	for i := range 6 {
		b.add(Placed{OrderID: fmt.Sprintf("o-%d", i)})
	}
	b.fail("amqp: unroutable: no queue bound", 0, 1)
	b.publishRows(1)
	pub := b.tr.Publisher()
	require.NoError(b.t, pub.Publish(b.dlq,
		deadLetter(b.topic, "inventory.reserve", "permanent", "unknown sku SKU-1", []byte(`{"order_id":"d-1"}`)),
		deadLetter(b.topic, "inventory.reserve", "permanent", "unknown sku SKU-2", []byte(`{"order_id":"d-2"}`)),
		deadLetter(b.topic, "payments.charge", "retries_exhausted", "card declined", []byte(`{"order_id":"d-3"}`))))
	b.waitDepth(3)
}

var figure = func(name string) *regexp.Regexp {
	return regexp.MustCompile(`data-live="outbox:[^"]+:` + name + `"[^>]*>([^<]*)</b>`)
}

// The outboxes page shows the outbox's counts as the database has them,
// and the dead-letter pages the topic's depth and its groups: the two
// "unknown sku" letters are one group (the SKU varies), "card declined"
// another.
func TestPagesShowCounts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed()
	c := b.client()

	p := c.get("/outboxes")
	require.Equal(t, http.StatusOK, p.status)
	for name, want := range map[string]string{"pending": "3", "failed": "2", "published": "1", "scheduled": "0"} {
		m := figure(name).FindStringSubmatch(p.body)
		require.NotNil(t, m, name)
		assert.Equal(t, want, m[1], name)
	}
	assert.Contains(t, p.body, "none active", "no relay runs")

	p = c.get("/dlq")
	require.Equal(t, http.StatusOK, p.status)
	assert.Regexp(t, `class="dlq-depth">3</b>`, p.body)

	p = c.get("/dlq/" + b.dlq)
	require.Equal(t, http.StatusOK, p.status, p.body)
	assert.Contains(t, p.body, `id="dlq-depth"`)
	assert.Regexp(t, `id="dlq-depth"[^>]*>3</b>`, p.body)
	assert.Regexp(t, `id="dlq-groups">2</b>`, p.body)
	assert.Equal(t, 2, strings.Count(p.body, `class="dlq-group"`))
	assert.Regexp(t, `(?s)inventory\.reserve</td><td>permanent</td><td><code>unknown sku SKU-‹n›</code></td><td class="n"><b class="group-count">2</b>`, p.body)
	assert.Regexp(t, `(?s)payments\.charge</td><td>retries_exhausted</td><td><code>card declined</code></td><td class="n"><b class="group-count">1</b>`, p.body)
	assert.Equal(t, 3, strings.Count(p.body, `<tr class="letter">`))
	b.waitDepth(3) // browsing put them back

	p = c.get("/outboxes/" + b.ob.Name() + "/failed")
	require.Equal(t, http.StatusOK, p.status)
	assert.Regexp(t, `id="failed-count">2</b>`, p.body)
	assert.Contains(t, p.body, "amqp: unroutable: no queue bound")

	// The JSON the live updates poll.
	req, _ := http.NewRequest(http.MethodGet, b.srv.URL+"/api/summary?dlq=1", nil)
	req.Header.Set("Accept", "application/json")
	p = c.do(req)
	assert.Contains(t, p.body, `"outbox:`+b.ob.Name()+`:pending":"3"`)
	assert.Contains(t, p.body, `"dlq:`+b.dlq+`:`+middleware.DeadLetterGroupDefault+`:depth":"3"`)

	p = c.get("/health")
	assert.Equal(t, http.StatusServiceUnavailable, p.status, "no relay is active")
	assert.Contains(t, p.body, "no relay holds the outbox")
}

// mutations are every request that changes state, with a form that would
// do it.
func (b *bundle) mutations() map[string]url.Values {
	ob := "/outboxes/" + b.ob.Name() + "/failed/"
	dlq := "/dlq/" + b.dlq + "/"
	return map[string]url.Values{
		ob + "requeue": {},
		ob + "delete":  {},
		dlq + "replay": {"expect": {"3"}},
		dlq + "delete": {"expect": {"3"}},
		"/logout":      {},
	}
}

// requireUnchanged checks that nothing was requeued, deleted or replayed.
func (b *bundle) requireUnchanged() {
	b.t.Helper()
	st := b.stats()
	require.EqualValues(b.t, 2, st.Failed)
	require.EqualValues(b.t, 3, st.Pending)
	b.waitDepth(3)
	require.Empty(b.t, b.auditLines())
}

// Without a token the console is read-only: every mutating request is
// refused with 403, whoever sends it and however, and changes nothing.
// With a token, a request without the login (or with a wrong bearer
// token) is refused with 401.
func TestActionsRefusedWithoutToken(t *testing.T) {
	t.Parallel()
	t.Run("no token configured", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(c *console.Config) { c.Token = "" })
		b.seed()
		c := b.client()
		p := c.post("/login", url.Values{"token": {token}})
		assert.Equal(t, http.StatusForbidden, p.status)
		for path, form := range b.mutations() {
			p := c.post(path, form)
			assert.Equal(t, http.StatusForbidden, p.status, path)
			assert.Contains(t, p.body, "read-only console", path)
			p = c.post(path, form, "Authorization", "Bearer "+token)
			assert.Equal(t, http.StatusForbidden, p.status, path)
		}
		p = c.get("/outboxes/" + b.ob.Name() + "/failed/confirm?action=delete")
		assert.Contains(t, p.body, "Read-only")
		assert.NotContains(t, p.body, `id="confirm"`, "no button")
		b.requireUnchanged()
	})
	t.Run("token configured, not logged in", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.seed()
		c := b.client()
		for path, form := range b.mutations() {
			p := c.post(path, form)
			assert.Equal(t, http.StatusUnauthorized, p.status, path)
			p = c.post(path, form, "Authorization", "Bearer wrong-token-wrong-token")
			assert.Equal(t, http.StatusUnauthorized, p.status, path)
			p = c.post(path, form, "Authorization", "Basic "+token)
			assert.Equal(t, http.StatusUnauthorized, p.status, path)
			// A GET on an action's path is no action.
			p = c.get(path)
			assert.NotEqual(t, http.StatusOK, p.status, path)
		}
		p := c.post("/login", url.Values{"token": {"wrong-token-wrong-token"}})
		assert.Equal(t, http.StatusUnauthorized, p.status)
		b.requireUnchanged()
		assert.Contains(t, b.logs.String(), `"msg":"console: request refused"`)
	})
}

// A forged cross-site POST is refused (403) and changes nothing: a logged
// in browser sent to the console's form by another site carries no CSRF
// token, or a wrong one, and its Origin or Sec-Fetch-Site names the
// other site. The same form with everything right goes through.
func TestForgedCrossSitePostRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed()
	c := b.client()
	c.login("ada")
	path := "/outboxes/" + b.ob.Name() + "/failed/delete"
	cf := c.get("/outboxes/" + b.ob.Name() + "/failed/confirm?action=delete")
	_, good := form(t, cf)
	require.NotEmpty(t, good.Get("csrf"))

	noCSRF := url.Values{}
	wrong := url.Values{"csrf": {strings.Repeat("0", len(good.Get("csrf")))}}
	for name, tc := range map[string]struct {
		form    url.Values
		headers []string
	}{
		"no csrf token":                 {noCSRF, nil},
		"wrong csrf token":              {wrong, nil},
		"csrf of another login":         {url.Values{"csrf": {otherCSRF(t, b)}}, nil},
		"foreign origin":                {good, []string{"Origin", "https://evil.example"}},
		"foreign origin, no fetch meta": {good, []string{"Origin", "https://evil.example", "Sec-Fetch-Site", ""}},
		"null origin":                   {good, []string{"Origin", "null", "Sec-Fetch-Site", ""}},
		"null origin, cross-site":       {good, []string{"Origin", "null", "Sec-Fetch-Site", "cross-site"}},
		"cross-site fetch":              {good, []string{"Sec-Fetch-Site", "cross-site", "Origin", ""}},
		"same-site subdomain":           {good, []string{"Sec-Fetch-Site", "same-site", "Origin", ""}},
	} {
		p := c.post(path, tc.form, tc.headers...)
		assert.Equal(t, http.StatusForbidden, p.status, name)
	}
	b.requireUnchanged()

	p := c.post(path, good)
	require.Equal(t, http.StatusOK, p.status, p.body)
	assert.Contains(t, p.body, "deleted 2 row(s): every failed row of outbox "+b.ob.Name())
	assert.EqualValues(t, 0, b.stats().Failed)
}

// otherCSRF is the CSRF token of another operator's login.
func otherCSRF(t *testing.T, b *bundle) string {
	o := b.client()
	o.login("mallory")
	_, v := form(t, o.get("/outboxes/"+b.ob.Name()+"/failed/confirm?action=delete"))
	return v.Get("csrf")
}

// No page shows a password of the URLs the console was given, or of URLs
// inside what it shows (an error naming a connection string): every page
// reachable from the start page by its links, logged in, is read.
func TestNoPasswordOnAnyPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed()
	leak := "postgres://app:hunter2-Leaked@db.internal:5432/orders"
	b.add(Placed{OrderID: "o-leak", Note: "see " + leak})
	b.fail("dial "+leak+": connection refused", 6)
	require.NoError(t, b.tr.Publisher().Publish(b.dlq,
		deadLetter(b.topic, "inventory.reserve", "failed", "cannot reach "+leak, []byte(`{"dsn":"`+leak+`"}`))))
	b.waitDepth(4)
	c := b.client()
	c.login("ada")

	seen := map[string]bool{}
	queue := []string{"/"}
	href := regexp.MustCompile(`href="(/[^"]*)"`)
	for len(queue) > 0 && len(seen) < 80 {
		path := unescape(queue[0])
		queue = queue[1:]
		if seen[path] {
			continue
		}
		seen[path] = true
		p := c.get(path)
		for _, secret := range []string{pgPassword, "hunter2-Leaked", ":guest@"} {
			require.NotContains(t, p.body, secret, "page %s", path)
		}
		for _, m := range href.FindAllStringSubmatch(p.body, -1) {
			queue = append(queue, m[1])
		}
	}
	assert.Greater(t, len(seen), 15, "the crawl reached the pages")
	for _, want := range []string{"/outboxes", "/dlq", "/inboxes", "/health", "/dlq/" + b.dlq} {
		assert.True(t, seen[want], "crawled %s", want)
	}
	// The database is shown, with its password masked.
	p := c.get("/outboxes")
	assert.Contains(t, p.body, "postgres:xxxxx@")
	p = c.get("/dlq")
	assert.Contains(t, p.body, "amqp://guest:xxxxx@")
}

// Without Config.DeadLetters, the dead-letter topics shown are those of
// the topics the outbox's rows name, when they exist on the transport.
func TestDeadLetterTopicsFoundFromOutbox(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *console.Config) { c.DeadLetters = nil })
	b.seed()
	c := b.client()
	p := c.get("/dlq")
	require.Equal(t, http.StatusOK, p.status)
	assert.Contains(t, p.body, `href="/dlq/`+b.dlq+`"`)
	assert.Regexp(t, `class="dlq-depth">3</b>`, p.body)
	p = c.get("/dlq/" + b.dlq)
	assert.Regexp(t, `id="dlq-groups">2</b>`, p.body)
	p = c.get("/dlq/" + b.topic + ".other.dlq")
	assert.Equal(t, http.StatusNotFound, p.status, "only the topics found")
}
