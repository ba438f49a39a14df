package docs

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
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

// runDemo: README.md's first block of "Operating it: the web console", run
// as written with bash in the repository root (with demoPorts), in a fresh
// shell's environment (no DATABASE_URL, TRANSPORT_URL or
// EVENTKIT_CONSOLE_TOKEN): on embedded defaults it says what it did with
// real counts (the good order paid, three dead letters), prints a token
// made for the run and the next steps, its console shows the three poison
// orders as one group, and an interrupt stops it. The steps after it are
// the requests of examples/demo/main_test.go.
func runDemo(t *testing.T, b block) {
	warm(t)
	cmds := commands(b.text)
	require.Len(t, cmds, 1, "%s", b)
	require.Regexp(t, demoLine, norm(cmds[0]), "%s: the block changed: change the runner demo too", b)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", "exec "+norm(cmds[0])+demoPorts)
	var err error
	cmd.Dir, err = filepath.Abs(repoRoot)
	require.NoError(t, err)
	cmd.Env = slices.DeleteFunc(cleanEnv(), func(kv string) bool { return strings.HasPrefix(kv, "EVENTKIT_CONSOLE_TOKEN=") })
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	stop := func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
	defer stop()

	var out strings.Builder
	for !strings.Contains(out.String(), "Ctrl-C stops the demo.\n") {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "the demo exited at start:\n%s\nstderr:\n%s", out.String(), stderr.String())
			out.WriteString(l + "\n")
		case <-ctx.Done():
			t.Fatalf("the demo did not start:\n%s\nstderr:\n%s", out.String(), stderr.String())
		}
	}
	text := out.String()
	assert.Contains(t, text, "transport mem://, database sqlite:", "embedded defaults")
	assert.Regexp(t, `(?m)^placed 1 order of 2 × SKU-1: \S+ is paid$`, text)
	assert.Regexp(t, `(?m)^placed 3 orders of 1 × SKU-404, which nobody sells: \S+, \S+, \S+$`, text)
	assert.Contains(t, text, "orders.order_created.dlq holds 3 dead letter(s)\n")
	assert.Regexp(t, `(?m)^  operator token [0-9a-f]{32} \(made for this run`, text)
	m := regexp.MustCompile(`(?m)^  console +(http://127\.0\.0\.1:\d+)/$`).FindStringSubmatch(text)
	require.NotNil(t, m, text)
	var page string
	require.Eventually(t, func() bool {
		resp, err := http.Get(m[1] + "/dlq/orders.order_created.dlq?refresh=1")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		page = string(b)
		return strings.Contains(page, `class="group-count">3</b>`)
	}, 30*time.Second, 100*time.Millisecond, "the console shows the three poison orders as one group: %s", page)
	assert.Regexp(t, `id="dlq-groups">1</b>`, page)

	stop()
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	assert.Equal(t, []string{"demo stopped"}, rest)
	select {
	case err := <-exited:
		var exit *exec.ExitError // go run exits 1 when its program was interrupted
		if err != nil {
			require.ErrorAs(t, err, &exit, stderr.String())
		}
	case <-ctx.Done():
		t.Fatal("the demo did not stop on SIGINT")
	}
}
