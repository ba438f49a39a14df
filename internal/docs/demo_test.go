package docs

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// demoLine is README.md's command that starts the demo.
var demoLine = regexp.MustCompile(`^go run \./examples/demo$`)

// demoPorts put the demo's four listeners on free loopback ports, so that
// parallel runs do not collide; the demo prints where they listen.
const demoPorts = " -orders-addr 127.0.0.1:0 -inventory-addr 127.0.0.1:0 -payments-addr 127.0.0.1:0 -console-addr 127.0.0.1:0"

// runningDemo is `go run ./examples/demo` running in a process group of
// its own.
type runningDemo struct {
	out    string            // what it printed up to its next steps
	urls   map[string]string // orders, inventory, payments, console
	token  string            // the operator token it made
	poison []string          // the ids of the poison orders it placed
}

var demoPart = regexp.MustCompile(`(?m)^  (orders|inventory|payments|console) +(http://127\.0\.0\.1:\d+)/?$`)

// startDemo runs README.md's command line (with demoPorts) with bash in
// the repository root, in a fresh shell's environment (no DATABASE_URL,
// TRANSPORT_URL or EVENTKIT_CONSOLE_TOKEN), and waits for its next steps.
// When the test ends it interrupts it (SIGINT, as Ctrl-C) and checks that
// the demo said it stopped and exited.
func startDemo(t *testing.T, line string) *runningDemo {
	t.Helper()
	warm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	p := startLines(t, ctx, line+demoPorts,
		slices.DeleteFunc(cleanEnv(), func(kv string) bool { return strings.HasPrefix(kv, "EVENTKIT_CONSOLE_TOKEN=") }))
	stderr := p.stderr
	t.Cleanup(func() {
		defer cancel()
		p.stopped(t, ctx, "demo stopped")
	})
	var out strings.Builder
	for !strings.Contains(out.String(), "Ctrl-C stops the demo.\n") {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("the demo exited at start:\n%s\nstderr:\n%s", out.String(), stderr)
			}
			out.WriteString(l + "\n")
		case <-ctx.Done():
			t.Fatalf("the demo did not start:\n%s\nstderr:\n%s", out.String(), stderr)
		}
	}
	d := &runningDemo{out: out.String(), urls: map[string]string{}}
	for _, m := range demoPart.FindAllStringSubmatch(d.out, -1) {
		d.urls[m[1]] = m[2]
	}
	require.Len(t, d.urls, 4, d.out)
	if m := regexp.MustCompile(`(?m)^  operator token ([0-9a-f]{32}) \(made for this run`).FindStringSubmatch(d.out); m != nil {
		d.token = m[1]
	}
	if m := regexp.MustCompile(`(?m)^placed 3 orders of 1 × SKU-404, which nobody sells: (\S+), (\S+), (\S+)$`).FindStringSubmatch(d.out); m != nil {
		d.poison = m[1:]
	}
	return d
}

// httpGet returns the status and body of a GET.
func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// runDemo: README.md's first block of "Operating it: the web console":
// on embedded defaults the demo says what it did with real counts (the
// good order paid, three dead letters), prints a token made for the run
// and the next steps, its console shows the three poison orders as one
// group, and an interrupt stops it.
func runDemo(t *testing.T, b block) {
	cmds := commands(b.text)
	require.Len(t, cmds, 1, "%s", b)
	require.Regexp(t, demoLine, norm(cmds[0]), "%s: the block changed: change the runner demo too", b)
	d := startDemo(t, norm(cmds[0]))
	assert.Contains(t, d.out, "transport mem://, database sqlite:", "embedded defaults")
	assert.Regexp(t, `(?m)^placed 1 order of 2 × SKU-1: \S+ is paid$`, d.out)
	assert.Len(t, d.poison, 3, d.out)
	assert.Contains(t, d.out, "orders.order_created.dlq holds 3 dead letter(s)\n")
	assert.NotEmpty(t, d.token, "a token made for the run: %s", d.out)
	var page string
	require.Eventually(t, func() bool {
		_, page = httpGet(d.urls["console"] + "/dlq/orders.order_created.dlq?refresh=1")
		return strings.Contains(page, `class="group-count">3</b>`)
	}, 30*time.Second, 100*time.Millisecond, "the console shows the three poison orders as one group: %s", page)
	assert.Regexp(t, `id="dlq-groups">1</b>`, page)
}

// runDemoSteps: README.md's steps after the demo started, run as written
// against a demo started as the block before says, its addresses, the
// token it printed (TOKEN) and its first poison order (<order_id>) put in:
// the stock is fixed, the group replayed with the token, and each poison
// order is handled once (7 of 10 left) and paid.
func runDemoSteps(t *testing.T, b block) {
	d := startDemo(t, "go run ./examples/demo")
	require.Len(t, d.poison, 3, d.out)
	require.NotEmpty(t, d.token, d.out)
	placeholders := func() *strings.Replacer {
		return strings.NewReplacer("127.0.0.1:8080", strings.TrimPrefix(d.urls["orders"], "http://"),
			"127.0.0.1:8081", strings.TrimPrefix(d.urls["inventory"], "http://"),
			"127.0.0.1:8089", strings.TrimPrefix(d.urls["console"], "http://"), "<order_id>", d.poison[0])
	}
	paid := func(t *testing.T) {
		for _, id := range d.poison {
			require.Eventually(t, func() bool {
				_, body := httpGet(d.urls["orders"] + "/orders/" + id)
				return strings.Contains(body, `"status":"paid"`)
			}, time.Minute, 50*time.Millisecond, "order %s is paid after the replay", id)
		}
	}
	runSteps(t, b, []step{
		{line: regexp.MustCompile(`^curl -s -XPUT 127\.0\.0\.1:8081/stock/SKU-404 -d '\{"available":10\}'$`), check: func(t *testing.T, out string) {
			assert.JSONEq(t, `{"available":10,"sku":"SKU-404"}`, out)
		}},
		{line: regexp.MustCompile(`^curl -s -H "Authorization: Bearer \$TOKEN" 127\.0\.0\.1:8089/dlq/orders\.order_created\.dlq/replay -d reason=permanent -d error=SKU-404 -d expect=3$`),
			check: func(t *testing.T, out string) {
				assert.Contains(t, out, `"messages":3`)
				assert.Contains(t, out, `"result":"replayed 3 of the 3 `)
			}},
		{line: regexp.MustCompile(`^curl -s 127\.0\.0\.1:8081/stock/SKU-404$`), before: paid, check: func(t *testing.T, out string) {
			assert.JSONEq(t, `{"available":7,"sku":"SKU-404"}`, out, "one reservation per order")
		}},
		{line: regexp.MustCompile(`^curl -s 127\.0\.0\.1:8080/orders/<order_id>$`), check: func(t *testing.T, out string) {
			assert.JSONEq(t, `{"order_id":"`+d.poison[0]+`","status":"paid"}`, out)
		}},
	}, placeholders, "TOKEN="+d.token)
	_, page := httpGet(d.urls["console"] + "/dlq/orders.order_created.dlq?refresh=1")
	assert.Regexp(t, `id="dlq-depth"[^>]*>0</b>`, page, "the dead-letter topic is empty")
}
