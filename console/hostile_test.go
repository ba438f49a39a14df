package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/forwarder"
)

const script = `<script>alert("owned")</script><img src=x onerror=alert(1)>`

// maxPage is what a page with one payload may weigh: MaxPayloadDefault
// (64 KiB) of it, escaped (at most 6 bytes per byte), and the page around.
const maxPage = 6*64<<10 + 64<<10

// requireSafe checks a page shows no markup from the data, only its
// escaped text, is valid UTF-8 and is bounded.
func requireSafe(t *testing.T, p page, what string) {
	t.Helper()
	require.Equal(t, http.StatusOK, p.status, what)
	assert.NotContains(t, p.body, "<script>alert", what)
	assert.NotContains(t, p.body, "<img src=x", what)
	assert.True(t, utf8.ValidString(p.body), what)
	assert.Less(t, len(p.body), maxPage, what)
	// The only scripts are the console's own, with its nonce.
	for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(p.body, -1) {
		assert.Regexp(t, `^<script nonce="[0-9a-f]{32}">$`, m, what)
	}
}

// Hostile payloads — HTML and JavaScript in an event field, a 5 MB
// payload, invalid UTF-8 in a payload and in the envelope — render
// escaped, valid and bounded, in the outbox's failed rows and in dead
// letters.
func TestHostilePayloadsRenderEscapedAndBounded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	big := strings.Repeat("x", 5<<20)
	b.add(Placed{OrderID: script, Note: script})
	b.add(Placed{OrderID: "big", Note: big})
	b.fail(script, 0, 1)
	ids := b.failedIDs(forwarder.FailedFilter{})
	require.Len(t, ids, 2)

	invalid := []byte("\xff\xfe<script>alert(2)</script>\x00\x1b[31m not UTF-8 \xc3\x28")
	letters := []struct{ name, payload, errMsg string }{
		{"html in a field", `{"order_id":"` + strings.ReplaceAll(script, `"`, `\"`) + `"}`, script},
		{"5 MB", `{"note":"` + big + `"}`, "too big"},
		{"5 MB not JSON", big, "too big"},
		{"invalid UTF-8", string(invalid), string(invalid)},
	}
	var dlqIDs []string
	for _, l := range letters {
		m := deadLetter(b.topic, "h<i>"+script, "failed", l.errMsg, []byte(l.payload))
		m.Metadata.Set("x-hostile", string(invalid)+script)
		require.NoError(t, b.tr.Publisher().Publish(b.dlq, m))
		dlqIDs = append(dlqIDs, m.UUID)
	}
	b.waitDepth(int64(len(letters)))

	c := b.client()
	c.login("ada")
	base := "/outboxes/" + b.ob.Name() + "/failed"
	requireSafe(t, c.get(base), "failed rows")
	p := c.get(base + "/row/" + ids[0])
	requireSafe(t, p, "html row")
	assert.Contains(t, p.body, `&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;`, "shown as text")
	p = c.get(base + "/row/" + ids[1])
	requireSafe(t, p, "5 MB row")
	assert.Regexp(t, `more bytes not shown \(of 5,242,\d{3}\)`, p.body)
	requireSafe(t, c.get(base+"/confirm?action=requeue&error="+url.QueryEscape(script)), "confirm page with a hostile filter")

	p = c.get("/dlq/" + b.dlq)
	requireSafe(t, p, "dead letters")
	assert.Contains(t, p.body, "h&lt;i&gt;&lt;script&gt;")
	for i, id := range dlqIDs {
		p := c.get("/dlq/" + b.dlq + "/letter/" + id)
		requireSafe(t, p, letters[i].name)
		assert.Contains(t, p.body, id, letters[i].name)
	}
	p = c.get("/dlq/" + b.dlq + "/letter/" + dlqIDs[3])
	assert.Contains(t, p.body, "\ufffd\ufffd&lt;script&gt;alert(2)&lt;/script&gt;\ufffd\ufffd[31m not UTF-8 \ufffd(", "replaced, escaped")
	b.waitDepth(int64(len(letters))) // looking took nothing
}

// Pages are bounded whatever a request asks: ?limit= is capped at
// MaxPageSize, nonsense falls back to the default, the next-page links go
// through every row once, and a page number past the end is an empty page.
func TestPaginationBounds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	evts := make([]any, 501)
	for i := range evts {
		evts[i] = Placed{OrderID: fmt.Sprint("o-", i)}
	}
	b.add(evts...)
	_, err := b.db.Exec(`UPDATE "` + b.ob.Table() + `" SET "status" = 2, "last_error" = 'rejected'`)
	require.NoError(t, err)
	c := b.client()
	base := "/outboxes/" + b.ob.Name() + "/failed"
	rowLink := regexp.MustCompile(`<tr><td><a href="` + regexp.QuoteMeta(base) + `/row/([^"]+)">`)
	next := regexp.MustCompile(`id="next" href="([^"]+)"`)

	rows := func(p page) []string {
		var ids []string
		for _, m := range rowLink.FindAllStringSubmatch(p.body, -1) {
			ids = append(ids, m[1])
		}
		return ids
	}
	p := c.get(base + "?limit=100000")
	assert.Len(t, rows(p), 500, "capped at MaxPageSize")
	assert.Contains(t, next.FindStringSubmatch(p.body)[1], "limit=500")
	for _, q := range []string{"?limit=0", "?limit=-5", "?limit=abc", "?after=garbage", "?after=-1"} {
		assert.Len(t, rows(c.get(base+q)), 50, q)
	}
	seen := map[string]bool{}
	path, pages := base+"?limit=120", 0
	for path != "" {
		p := c.get(path)
		require.Equal(t, http.StatusOK, p.status)
		for _, id := range rows(p) {
			require.False(t, seen[id], "row %s on two pages", id)
			seen[id] = true
		}
		pages++
		path = ""
		if m := next.FindStringSubmatch(p.body); m != nil {
			path = unescape(m[1])
		}
	}
	assert.Len(t, seen, 501)
	assert.Equal(t, 5, pages)

	for i := range 7 {
		require.NoError(t, b.tr.Publisher().Publish(b.dlq, deadLetter(b.topic, "h", "failed", fmt.Sprint("e", i), []byte(`{}`))))
	}
	b.waitDepth(7)
	letter := regexp.MustCompile(`<tr class="letter">`)
	for q, want := range map[string]int{"?limit=3": 3, "?limit=3&page=2": 3, "?limit=3&page=3": 1, "?limit=3&page=4": 0,
		"?page=99999999999999999": 0, "?page=99999999999999999999999": 7, "?limit=3&page=9223372036854775807": 0, "?page=-3": 7, "?limit=100000": 7} {
		p := c.get("/dlq/" + b.dlq + q)
		require.Equal(t, http.StatusOK, p.status, q)
		assert.Len(t, letter.FindAllString(p.body, -1), want, q)
	}
	st, err := b.ob.Stats(context.Background())
	require.NoError(t, err)
	assert.EqualValues(t, 501, st.Failed)
}
