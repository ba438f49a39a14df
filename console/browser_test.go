package console_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/console"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

// ScreenshotsEnv names a folder the browser tests save a screenshot of
// each view to (docs/console in the repository is what the README shows:
// EVENTKIT_CONSOLE_SCREENSHOTS=$PWD/docs/console go test -run Browser
// ./console/). Unset, they go to a temporary folder.
const screenshotsEnv = "EVENTKIT_CONSOLE_SCREENSHOTS"

// browser starts headless Chromium (Debian's chromium; missing, the test
// skips, or fails under CI) and returns a context of one tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		path, err = exec.LookPath("chromium-browser")
	}
	if err != nil {
		testenv.Unavailable(t, "Chromium (apt-get install -y chromium)", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.WindowSize(1280, 1000),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
	})
	require.NoError(t, chromedp.Do(ctx), "start Chromium")
	return ctx
}

// do runs the actions, each step bounded: on a failure the page is
// captured (failure.png in the screenshots folder) and its URL logged.
func do(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
		screenshot(t, ctx, "failure")
		t.Fatalf("browser: %v at %s: %s", err, loc, body)
	}
}

// loadTime is how long the browser took for the last navigation, from its
// start to the end of the load event (Navigation Timing): what the user
// waits, without the test's remote-control round trips.
func loadTime(t *testing.T, ctx context.Context) time.Duration {
	t.Helper()
	ms, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(function(){var n=performance.getEntriesByType("navigation")[0]; return n.loadEventEnd - n.startTime})()`))
	require.NoError(t, err)
	require.Positive(t, ms)
	return time.Duration(ms * float64(time.Millisecond))
}

// screenshot saves the page as name.png.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv(screenshotsEnv)
	if dir == "" {
		dir = t.TempDir()
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.Greater(t, len(png), 1000)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	require.NoError(t, err, sel)
	return strings.TrimSpace(s)
}

// In a real browser over a real PostgreSQL outbox and RabbitMQ dead
// letters made by the Default chain: the counts are shown, an operator
// logs in, replays a group by clicking, sees the dead-letter count drop,
// and the events are handled, each once with its id. Every view is
// captured.
func TestBrowserReplayGroup(t *testing.T) {
	t.Parallel()
	var inbox *middleware.SQLInbox
	b := setup(t, func(c *console.Config) {
		c.Mask = []string{"email"}
		c.SampleInterval = 2 * time.Second
	})
	inboxTable := testenv.Name(t, "inbox")
	var err error
	inbox, err = middleware.NewPostgresInbox(b.db, middleware.InboxConfig{Table: inboxTable})
	require.NoError(t, err)
	require.NoError(t, inbox.Setup(context.Background()))
	t.Cleanup(func() { _, _ = b.db.Exec(`DROP TABLE IF EXISTS "` + inboxTable + `"`) })
	// A console with the inbox too, over the same outbox and topic.
	c, err := console.New(console.Config{Outboxes: []console.Outbox{{Outbox: b.ob, Database: b.dbURL}}, Inboxes: []console.Inbox{{Inbox: inbox, Database: b.dbURL}},
		Transport: b.tr, DeadLetters: []console.DeadLetterTopic{{Topic: b.dlq}}, Token: token, Secrets: []string{pgPassword},
		Logger: slog.New(slog.NewJSONHandler(b.logs, nil)), DeadLetterRefresh: time.Nanosecond, ReplayIdleTimeout: time.Second, Mask: []string{"email"},
		ScanWait: 20 * time.Second})
	require.NoError(t, err)
	b.serve(c)

	for i := range 4 {
		b.add(Placed{OrderID: fmt.Sprintf("o-%d", i), Note: `{"email":"ada@example.com"}`})
	}
	b.fail("amqp: unroutable: no queue is bound to exchange orders.order_created", 0, 1)
	ps := b.poison(3, 2)
	ctx := browser(t)
	base := b.srv.URL

	do(t, ctx, chromedp.Navigate(base+"/outboxes"), chromedp.WaitVisible(chromedp.CSS("#outbox-"+b.ob.Name())))
	assert.Equal(t, "2", text(t, ctx, `[data-live="outbox:`+b.ob.Name()+`:pending"]`))
	assert.Equal(t, "2", text(t, ctx, `[data-live="outbox:`+b.ob.Name()+`:failed"]`))
	screenshot(t, ctx, "outboxes")

	do(t, ctx,
		chromedp.Navigate(base+"/login"),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.SendKeys(chromedp.CSS("#name"), "ada"),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/logout"]`)))
	assert.Contains(t, text(t, ctx, "header .who"), "ada from 127.0.0.1")

	do(t, ctx, chromedp.Navigate(base+"/outboxes/"+b.ob.Name()+"/failed"), chromedp.WaitVisible(chromedp.CSS("#failed-count")))
	assert.Equal(t, "2", text(t, ctx, "#failed-count"))
	screenshot(t, ctx, "failed")
	do(t, ctx, chromedp.Click(chromedp.CSS(`table a[href*="/failed/row/"]`)), chromedp.WaitVisible(chromedp.CSS("pre")))
	screenshot(t, ctx, "failedrow")

	do(t, ctx, chromedp.Navigate(base+"/dlq"), chromedp.WaitVisible(chromedp.CSS("#dlq-topics")))
	assert.Equal(t, "5", text(t, ctx, ".dlq-depth"))
	screenshot(t, ctx, "dlqindex")

	do(t, ctx, chromedp.Navigate(base+"/dlq/"+b.dlq), chromedp.WaitVisible(chromedp.CSS("#dlq-group-table")))
	assert.Equal(t, "5", text(t, ctx, "#dlq-depth"))
	assert.Equal(t, "2", text(t, ctx, "#dlq-groups"))
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("#dlq-group-table")))
	require.NoError(t, err)
	m := regexp.MustCompile(`data-group="([0-9a-f]+)"><td>[^<]*</td><td>permanent</td><td><code>[^<]*unknown sku`).FindStringSubmatch(html)
	require.NotNil(t, m, html)
	screenshot(t, ctx, "dlq")

	do(t, ctx, chromedp.Click(chromedp.CSS(`table#letters a[href*="/letter/"]`)), chromedp.WaitVisible(chromedp.CSS("#payload")))
	screenshot(t, ctx, "letter")

	// The cause is fixed; the operator replays the group by clicking.
	ps.fixed.Store(true)
	do(t, ctx, chromedp.Navigate(base+"/dlq/"+b.dlq),
		chromedp.Click(chromedp.CSS(`tr[data-group="`+m[1]+`"] a.replay-group`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm")))
	assert.Equal(t, "3", text(t, ctx, "#confirm-count"), "the count is shown before confirming")
	screenshot(t, ctx, "confirm")
	do(t, ctx, chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#flash")))
	assert.Contains(t, text(t, ctx, "#flash"), "replayed 3 of the 3")
	require.Eventually(t, func() bool { return ps.handledCount() == 3 }, 30*time.Second, 20*time.Millisecond)
	// The page's own live update shows the count drop, without a reload.
	_, err = chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector("#dlq-depth").textContent.trim() === "2"`,
		chromedp.WithPollingTimeout(20*time.Second)))
	require.NoError(t, err, "the live update shows the drop")
	ps.mu.Lock()
	for _, id := range ps.skuIDs {
		assert.Equal(t, 1, ps.handled[id], "event %s handled once, with its id", id)
	}
	ps.mu.Unlock()
	assert.Equal(t, "1", text(t, ctx, "#dlq-groups"))
	screenshot(t, ctx, "replayed")

	do(t, ctx, chromedp.Navigate(base+"/inboxes"), chromedp.WaitVisible(chromedp.CSS("main section")))
	assert.Contains(t, text(t, ctx, "main"), inboxTable)
	screenshot(t, ctx, "inboxes")
	do(t, ctx, chromedp.Navigate(base+"/health"), chromedp.WaitVisible(chromedp.CSS("#checks")))
	screenshot(t, ctx, "health")
	body, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	require.NoError(t, err)
	assert.NotContains(t, body, pgPassword)
}

// A dead-letter topic of 100,000 messages (the SQL transport on
// PostgreSQL) renders in under a second, cold: the scan reads ScanLimit of
// them, the depth is counted, the page lists PageSize.
func TestBrowserLargeDeadLetterTopic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t) // for its database and its names
	trURL := testenv.WithDelayTable(t, testenv.PostgresURL())
	tr, err := transports.Open(ctx, trURL)
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	// The SQL transport's table names bound a topic to 45 characters.
	dlq := testenv.Track(fmt.Sprintf("conbig_%x", time.Now().UnixNano())) + ".dlq"
	table := "watermill_" + dlq
	u := regexp.MustCompile(`delay_table=([^&]+)`).FindStringSubmatch(trURL)
	t.Cleanup(func() {
		for _, tbl := range []string{table, "watermill_offsets_" + dlq, u[1]} {
			_, err := b.db.Exec(`DROP TABLE IF EXISTS "` + tbl + `"`)
			assert.NoError(t, err)
		}
	})
	require.NoError(t, tr.Publisher().Publish(dlq, deadLetter(b.topic, "inventory.reserve", "permanent", "unknown sku SKU-1", []byte(`{"order_id":"o-1"}`))))
	const total = 100_000
	began := time.Now()
	_, err = b.db.Exec(`WITH g AS (SELECT gen_random_uuid()::text AS u, i FROM generate_series(2, $1) AS i)
		INSERT INTO "`+table+`" ("uuid", "payload", "metadata", "transaction_id")
		SELECT g.u, t."payload", jsonb_set(jsonb_set(t."metadata"::jsonb, '{event_id}', to_jsonb(g.u)),
			'{dlq_error}', to_jsonb('unknown sku SKU-' || g.i::text))::json, pg_current_xact_id()
		FROM "`+table+`" AS t, g`, total)
	require.NoError(t, err)
	t.Logf("seeded %d dead letters in %s", total, time.Since(began).Round(time.Millisecond))
	n, err := tr.Depth(ctx, dlq, middleware.DeadLetterGroupDefault)
	require.NoError(t, err)
	require.EqualValues(t, total, n)

	// The defaults, but for a scan shown for a minute: the warm load below
	// shows the first scan, whatever the time the machine takes.
	c, err := console.New(console.Config{Transport: tr, DeadLetters: []console.DeadLetterTopic{{Topic: dlq}},
		Outboxes: []console.Outbox{{Outbox: b.ob}}, Logger: slog.New(slog.DiscardHandler), DeadLetterRefresh: time.Minute})
	require.NoError(t, err)
	b.serve(c)
	bctx := browser(t)
	do(t, bctx, chromedp.Navigate(b.srv.URL+"/outboxes")) // the browser is warm
	page := b.srv.URL + "/dlq/" + dlq

	// Cold: the page answers within ScanWait with what the scan has so
	// far (the depth, once counted), and reloads itself until it is done.
	began = time.Now()
	do(t, bctx, chromedp.Navigate(page))
	coldAround := time.Since(began)
	cold := loadTime(t, bctx)
	assert.Less(t, cold, time.Second, "cold")
	assert.Contains(t, []string{"…", "100,000"}, text(t, bctx, "#dlq-depth"))
	require.Eventually(t, func() bool { // across the page's reloads
		done, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`(document.querySelector("#dlq-groups")||{}).textContent === "1"`))
		return err == nil && done
	}, 2*time.Minute, 100*time.Millisecond, "the page shows the scan when it is done")
	scanned := time.Since(began)

	// Warm: the scan is shown at once (the best of 3 loads: the machine
	// is shared).
	warm, warmAround := time.Hour, time.Hour
	for i := range 3 {
		began = time.Now()
		do(t, bctx, chromedp.Navigate(page+fmt.Sprintf("?again=%d", i)))
		warmAround = min(warmAround, time.Since(began))
		warm = min(warm, loadTime(t, bctx))
	}
	testenv.Figure(t, "dead-letter page of %d messages (SQL transport, scan of %d, %d listed), load in the browser: cold %s (depth shown, scan running; %s with the test's remote control), "+
		"scan shown after %s, warm %s (%s)", total, console.ScanLimitDefault, console.PageSizeDefault, cold.Round(time.Millisecond),
		coldAround.Round(time.Millisecond), scanned.Round(time.Millisecond), warm.Round(time.Millisecond), warmAround.Round(time.Millisecond))
	assert.Less(t, warm, time.Second, "warm")
	rows, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("tr.letter").length`))
	require.NoError(t, err)
	assert.Equal(t, console.PageSizeDefault, rows)
	assert.Contains(t, text(t, bctx, "main"), "the first 10,000 messages only")
	assert.Equal(t, "1", text(t, bctx, "#dlq-groups"), "the SKUs differ, the cause is one")
	assert.Equal(t, "100,000", text(t, bctx, "#dlq-depth"))
	screenshot(t, bctx, "dlq-100k")
}
