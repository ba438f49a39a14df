package console_test

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/b2131a45/eventkit/console"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/internal/dburl"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
	"github.com/b2131a45/eventkit/transports/amqp"
)

func TestMain(m *testing.M) {
	testenv.Main(m,
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}

// The operator token of the tests, and the password put into the
// PostgreSQL URL the console is given (trust authentication: the server
// never asks for it, so any password connects).
const (
	token      = "test-operator-token-0123456789"
	pgPassword = "pg-Secret-4711"
)

// Placed is the event of the tests' outbox.
type Placed struct {
	OrderID string `json:"order_id"`
	Note    string `json:"note,omitempty"`
}

// bundle is one test's console over its own PostgreSQL outbox and
// RabbitMQ dead-letter topic.
type bundle struct {
	t      *testing.T
	db     *sql.DB
	dbURL  string // with pgPassword
	ob     *forwarder.Outbox
	tr     *transports.Transport
	conn   *amqp091.Connection
	topic  string // the live topic; its dead letters are in dlq
	dlq    string
	logs   *testenv.Buffer
	srv    *httptest.Server
	c      *console.Console
	queues []string
}

// withPassword returns rawURL with password set.
func withPassword(t testing.TB, rawURL, password string) string {
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	user := "postgres"
	if u.User != nil {
		user = u.User.Username()
	}
	u.User = url.UserPassword(user, password)
	return u.String()
}

// setup returns a bundle; mod changes the console's Config before it is
// made (Token is set unless mod clears it).
func setup(t *testing.T, mod ...func(*console.Config)) *bundle {
	t.Helper()
	ctx := context.Background()
	b := &bundle{t: t, logs: &testenv.Buffer{}}
	b.dbURL = withPassword(t, testenv.PostgresURL(), pgPassword)
	db, err := dburl.Open(b.dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(ctx); err != nil {
		testenv.Unavailable(t, "PostgreSQL", err)
	}
	b.db = db
	b.conn, err = amqp091.Dial(testenv.AMQPURL())
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ", err)
	}
	t.Cleanup(func() { b.conn.Close() })

	name := testenv.Name(t, "con")
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	b.topic = name + ".placed"
	b.dlq = middleware.DeadLetterTopic(b.topic)
	reg := events.NewRegistry()
	require.NoError(t, events.Register[Placed](reg, "console.order_placed"))
	b.ob, err = forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Name: name, Source: "tests",
		Topic: func(string) string { return b.topic }, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, b.ob.Setup(ctx))
	t.Cleanup(func() { assert.NoError(t, b.ob.Drop(context.Background())) })

	b.tr, err = transports.Open(ctx, testenv.AMQPURL())
	require.NoError(t, err)
	t.Cleanup(func() { b.tr.Close() })
	// The dead-letter queue of the default group, as the Default chain
	// declares it.
	sub, err := b.tr.Subscriber(middleware.DeadLetterGroupDefault)
	require.NoError(t, err)
	require.NoError(t, sub.(message.SubscribeInitializer).SubscribeInitialize(b.dlq))
	require.NoError(t, sub.Close())
	b.deleteQueues(amqp.QueueName(b.dlq, middleware.DeadLetterGroupDefault))
	t.Cleanup(b.cleanupAMQP)

	cfg := console.Config{
		Outboxes:    []console.Outbox{{Outbox: b.ob, Database: b.dbURL}},
		Transport:   b.tr,
		DeadLetters: []console.DeadLetterTopic{{Topic: b.dlq}},
		Token:       token,
		Logger:      slog.New(slog.NewJSONHandler(b.logs, nil)),
		Secrets:     []string{pgPassword},
		// Scans are read again at once: the tests look right after acting.
		DeadLetterRefresh: time.Nanosecond,
		SampleInterval:    time.Second,
		ReplayIdleTimeout: time.Second,
		// Pages wait for their scan: the tests read what they show.
		ScanWait: 20 * time.Second,
	}
	for _, m := range mod {
		m(&cfg)
	}
	b.c, err = console.New(cfg)
	require.NoError(t, err)
	srv, c := httptest.NewServer(b.c), b.c
	b.srv = srv
	t.Cleanup(func() {
		srv.Close()
		assert.NoError(t, c.Close())
	})
	return b
}

// serve serves c instead of the console setup made.
func (b *bundle) serve(c *console.Console) {
	b.srv.Close()
	b.c = c
	srv := httptest.NewServer(c)
	b.srv = srv
	b.t.Cleanup(func() {
		srv.Close()
		assert.NoError(b.t, c.Close())
	})
}

// deleteQueues deletes the queues when the test ends.
func (b *bundle) deleteQueues(queues ...string) { b.queues = append(b.queues, queues...) }

func (b *bundle) cleanupAMQP() {
	ch, err := b.conn.Channel()
	if !assert.NoError(b.t, err) {
		return
	}
	defer ch.Close()
	for _, q := range b.queues {
		_, _ = ch.QueueDelete(q, false, false, false)
	}
	for _, x := range []string{b.topic, b.dlq} {
		_ = ch.ExchangeDelete(x, false, false)
	}
}

// add writes evts to the outbox in one committed transaction.
func (b *bundle) add(evts ...any) {
	b.t.Helper()
	tx, err := b.db.Begin()
	require.NoError(b.t, err)
	require.NoError(b.t, b.ob.Add(context.Background(), tx, evts...))
	require.NoError(b.t, tx.Commit())
}

// fail parks the rows at these positions (0: the first row written) as
// failed with errMsg, as a relay does after MaxAttempts rejections.
func (b *bundle) fail(errMsg string, positions ...int) {
	b.t.Helper()
	for _, pos := range positions {
		res, err := b.db.Exec(`UPDATE "`+b.ob.Table()+`" SET "status" = 2, "attempts" = 5, "last_error" = $1 WHERE "offset" = `+
			`(SELECT "offset" FROM "`+b.ob.Table()+`" ORDER BY "offset" OFFSET $2 LIMIT 1)`, errMsg, pos)
		require.NoError(b.t, err)
		n, err := res.RowsAffected()
		require.NoError(b.t, err)
		require.EqualValues(b.t, 1, n, "row %d", pos)
	}
}

// publishRows marks n pending rows published, as a relay does.
func (b *bundle) publishRows(n int) {
	b.t.Helper()
	_, err := b.db.Exec(`UPDATE "`+b.ob.Table()+`" SET "status" = 1, "published_at" = CURRENT_TIMESTAMP WHERE "offset" IN (SELECT "offset" FROM "`+b.ob.Table()+`" WHERE "status" = 0 ORDER BY "offset" LIMIT $1)`, n)
	require.NoError(b.t, err)
}

func (b *bundle) stats() forwarder.Stats {
	b.t.Helper()
	st, err := b.ob.Stats(context.Background())
	require.NoError(b.t, err)
	return st
}

func (b *bundle) depth() int64 {
	b.t.Helper()
	n, err := b.tr.Depth(context.Background(), b.dlq, middleware.DeadLetterGroupDefault)
	require.NoError(b.t, err)
	return n
}

// deadLetter is a message as PoisonQueue parks it.
func deadLetter(original, handler, reason, errMsg string, payload []byte) *message.Message {
	m := message.NewMessage(watermill.NewUUID(), payload)
	m.Metadata.Set(events.KeyName, "console.order_placed")
	m.Metadata.Set(events.KeyEventID, m.UUID)
	m.Metadata.Set(middleware.KeyReason, reason)
	m.Metadata.Set(middleware.KeyError, errMsg)
	m.Metadata.Set(middleware.KeyAttempts, "5")
	m.Metadata.Set(middleware.KeyOriginalTopic, original)
	m.Metadata.Set(middleware.KeyHandler, handler)
	m.Metadata.Set(middleware.KeyFailedAt, time.Now().UTC().Format(time.RFC3339Nano))
	return m
}

// waitDepth waits until the dead-letter queue holds n ready messages.
func (b *bundle) waitDepth(n int64) {
	b.t.Helper()
	require.Eventually(b.t, func() bool { return b.depth() == n }, 20*time.Second, 20*time.Millisecond, "want depth %d, have %d", n, b.depth())
}

// client is a browser: cookies kept, redirects followed.
type client struct {
	t    *testing.T
	b    *bundle
	http *http.Client
}

func (b *bundle) client() *client {
	jar, err := cookiejar.New(nil)
	require.NoError(b.t, err)
	return &client{t: b.t, b: b, http: &http.Client{Jar: jar, Timeout: 60 * time.Second}}
}

// page is an answer, its body read.
type page struct {
	status int
	body   string
	url    string
}

func (c *client) get(path string) page {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.b.srv.URL+path, nil)
	require.NoError(c.t, err)
	return c.do(req)
}

func (c *client) do(req *http.Request) page {
	c.t.Helper()
	resp, err := c.http.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	return page{status: resp.StatusCode, body: string(body), url: resp.Request.URL.String()}
}

// post sends form to path as a same-origin browser form does.
func (c *client) post(path string, form url.Values, headers ...string) page {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.b.srv.URL+path, strings.NewReader(form.Encode()))
	require.NoError(c.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", c.b.srv.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	return c.do(req)
}

func (c *client) login(who string) {
	c.t.Helper()
	p := c.post("/login", url.Values{"token": {token}, "name": {who}})
	require.Equal(c.t, http.StatusOK, p.status, p.body)
	require.Contains(c.t, p.body, who+" from 127.0.0.1")
}

var (
	formPattern   = regexp.MustCompile(`(?s)<form method="post" action="([^"]+)">(.*?)</form>`)
	hiddenPattern = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
)

// form returns the action and the hidden fields of the confirm page's form.
func form(t *testing.T, p page) (string, url.Values) {
	t.Helper()
	var last []string
	for _, m := range formPattern.FindAllStringSubmatch(p.body, -1) {
		if !strings.HasSuffix(m[1], "/logout") {
			last = m
		}
	}
	require.NotNil(t, last, "no form in %s", p.body)
	v := url.Values{}
	for _, h := range hiddenPattern.FindAllStringSubmatch(last[2], -1) {
		v.Add(unescape(h[1]), unescape(h[2]))
	}
	return unescape(last[1]), v
}

var unescaper = strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">", "&#34;", `"`, "&#39;", "'", "&quot;", `"`)

func unescape(s string) string { return unescaper.Replace(s) }

// confirm opens the confirm page at path, checks the count it shows, and
// submits its form: the page the action redirects to.
func (c *client) confirm(path string, count int) page {
	c.t.Helper()
	p := c.get(path)
	require.Equal(c.t, http.StatusOK, p.status, p.body)
	require.Regexp(c.t, `id="confirm-count">(up to )?`+regexp.QuoteMeta(commas(count))+`</b>`, p.body)
	action, v := form(c.t, p)
	return c.post(action, v)
}

func commas(n int) string {
	s := strconv.Itoa(n)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// auditLines returns the audit log lines of actions.
func (b *bundle) auditLines() []string {
	var out []string
	for _, l := range strings.Split(b.logs.String(), "\n") {
		if strings.Contains(l, `"msg":"console: action"`) {
			out = append(out, l)
		}
	}
	return out
}
