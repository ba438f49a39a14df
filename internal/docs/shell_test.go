package docs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
)

// runners run the blocks marked <!-- run: NAME -->, by NAME, command by
// command: a command a runner has no check for fails the test, so a line
// added to a block needs its check here. A go test command is never run
// from inside a test: its runner checks it against the code instead, and
// that .ci/run runs the whole suite (go test -race -count=1 ./...), which
// runs it.
var runners = map[string]func(t *testing.T, b block){
	"quickstart":   runQuickstart,  // README.md, the first block
	"cli":          runCLI,         // README.md, "Operating it: the CLI" (cli_test.go)
	"demo":         runDemo,        // README.md, "Operating it: the web console", the first block (demo_test.go)
	"demo-steps":   runDemoSteps,   // README.md, "Operating it: the web console", the steps after it (demo_test.go)
	"console":      runConsole,     // README.md, "Operating it: the web console" (console_test.go)
	"fault-tests":  runFaultTests,  // docs/guarantees.md, the fault tests' figures
	"node-publish": runNodePublish, // docs/interop.md, "$ node publish.js"
}

// TestDocsRunBlocks runs every block marked <!-- run: NAME --> with its
// runner.
func TestDocsRunBlocks(t *testing.T) {
	t.Parallel()
	for _, b := range allBlocks(t) {
		run, ok := runners[b.arg]
		if b.kind != markRun || !ok {
			continue // TestDocsBlocksAreMarked reports a runner that does not exist
		}
		t.Run(b.arg, func(t *testing.T) {
			t.Parallel()
			run(t, b)
		})
	}
}

// step is what a runner does for the commands that match line: what the
// command needs beforehand, and what it must print (its exit code must be
// 0). Each step of a runner matches one command of the block. A step with
// prove does not run its command (a go test command, which a test does
// not run): prove checks what runs it instead.
type step struct {
	line   *regexp.Regexp
	before func(t *testing.T)
	check  func(t *testing.T, stdout string)
	prove  func(t *testing.T, command string)
}

// runSteps runs each command of b with bash in the repository root, with
// env, after the before of the step that matches it, and checks it exits
// 0 and prints what the step says. Every command has a step, every step a
// command. placeholders are replaced in a command before it runs.
func runSteps(t *testing.T, b block, steps []step, placeholders func() *strings.Replacer, env ...string) {
	t.Helper()
	used := make([]bool, len(steps))
	for _, c := range commands(b.text) {
		i := slices.IndexFunc(steps, func(s step) bool { return s.line.MatchString(norm(c)) })
		if !assert.GreaterOrEqual(t, i, 0, "%s: no check for %q in the runner %s (internal/docs): add a step that sets up what it needs and checks what it prints", b, c, b.arg) {
			continue
		}
		require.False(t, used[i], "%s: two commands match the step %s", b, steps[i].line)
		used[i] = true
		s := steps[i]
		if s.prove != nil {
			s.prove(t, norm(c))
			continue
		}
		if s.before != nil {
			s.before(t)
		}
		if placeholders != nil {
			c = placeholders().Replace(c)
		}
		code, out, errOut := sh(t, ".", c, env...)
		require.Equal(t, 0, code, "%s: %q exited %d\nstdout:\n%s\nstderr:\n%s", b, c, code, out, errOut)
		if s.check != nil {
			s.check(t, out)
		}
	}
	for i, s := range steps {
		assert.True(t, used[i], "%s: no command matches the step %s: the block changed, change the runner %s too", b, s.line, b.arg)
	}
}

// unset are the variables a fresh shell does not have: the tests' own
// environment must not change what a README command does.
var unset = []string{"DATABASE_URL", "TRANSPORT_URL", "EVENTKIT_DB", "EVENTKIT_TRANSPORT", "AMQP_URL", "TOPIC", "NODE_PATH"}

// sh runs command with bash in dir (relative to the repository root) with
// the process's environment less unset, plus env, and returns its exit
// code and output. The go command of go test is first on PATH (go test
// puts $GOROOT/bin there).
func sh(t *testing.T, dir, command string, env ...string) (int, string, string) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	require.NoError(t, err, "bash")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // a cold build of a command
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, "-c", command)
	cmd.Dir, err = filepath.Abs(filepath.Join(repoRoot, dir))
	require.NoError(t, err)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(unset, name) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	t.Logf("$ %s (%s)\n%s", command, time.Since(start).Round(time.Millisecond), stdout.String())
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	require.NoError(t, err, "%q", command)
	return 0, stdout.String(), stderr.String()
}

// warm compiles the programs the blocks run, once per process, so that
// their go run commands, running in parallel, do not compile the same
// packages side by side.
func warm(t *testing.T) {
	t.Helper()
	out, err := warmBuild()
	require.NoError(t, err, "go build: %s", out)
}

var warmBuild = sync.OnceValues(func() (string, error) {
	cmd := exec.Command("go", "build", "./cmd/eventkit", "./examples/quickstart", "./examples/demo")
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	return string(out), err
})

// ciRuns checks that .ci/run, which CI runs, runs command: the proof of a
// go test command that a test does not run.
func ciRuns(t *testing.T, b block, command string) {
	t.Helper()
	ci := string(readRepoFile(t, ".ci/run"))
	assert.Regexp(t, `(?m)^`+regexp.QuoteMeta(command)+`( |$)`, ci,
		"%s: %q is not run by .ci/run, which CI runs: nothing proves it passes", b, command)
}

// runQuickstart: README.md's first block. go run ./examples/quickstart
// runs as written, on embedded defaults (no DATABASE_URL or
// TRANSPORT_URL), and tells the story the README says: order → outbox →
// relay → inventory → payments, a duplicate removed, a poison event
// dead-lettered. The go test line is CI's command (.ci/run).
func runQuickstart(t *testing.T, b block) {
	warm(t)
	runSteps(t, b, []step{
		{line: regexp.MustCompile(`^go run \./examples/quickstart$`), check: func(t *testing.T, out string) {
			assert.Contains(t, out, "transport mem://, database sqlite:", "embedded defaults: SQLite and mem://")
			for _, hop := range []string{`inventory ← orders.order_created `, `payments  ← inventory.stock_reserved `, `orders    ← payments.payment_processed `} {
				assert.Contains(t, out, hop, "order → outbox → relay → inventory → payments")
			}
			assert.Regexp(t, `(?m)^summary: .*\b1 duplicate removed, 1 dead letter\b.*, order \S+ paid$`, out, "a duplicate removed, a poison event dead-lettered")
		}},
		// Not run here: it is the whole suite, this test included.
		{line: regexp.MustCompile(`^go test -race -count=1 \./\.\.\.$`), prove: func(t *testing.T, c string) { ciRuns(t, b, c) }},
	}, nil)
}

// faultLine is docs/guarantees.md's command for the fault tests' figures.
var faultLine = regexp.MustCompile(`^go test -race -v -run '([^']+)' ((?:\./[\w/]+/ )+)\| grep -E '([^']+)'$`)

// runFaultTests: docs/guarantees.md's command that shows the fault tests'
// figures. Not run from here (it is minutes of fault injection, and the
// tests run in .ci/run's go test ./...): its -run pattern must select, in
// each package named, tests that print a "committed / delivered / …"
// figure, and its grep must keep those lines and go test's verdicts.
func runFaultTests(t *testing.T, b block) {
	cmds := commands(b.text)
	require.Len(t, cmds, 1, "%s", b)
	m := faultLine.FindStringSubmatch(norm(cmds[0]))
	require.NotNil(t, m, "%s: %q is not go test -race -v -run '…' ./pkg/… | grep -E '…' (change the runner fault-tests with it)", b, cmds[0])
	pattern, err := regexp.Compile(m[1])
	require.NoError(t, err)
	keep, err := regexp.Compile(m[3])
	require.NoError(t, err)
	testFunc := regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\) \{$`)
	figure := regexp.MustCompile(`testenv\.Figure\(t, "([^"]*committed[^"]*)"`)
	for _, pkg := range strings.Fields(m[2]) {
		files, err := filepath.Glob(filepath.Join(repoRoot, pkg, "*_test.go"))
		require.NoError(t, err)
		var selected, figures []string
		for _, f := range files {
			raw, err := os.ReadFile(f)
			require.NoError(t, err)
			src := string(raw)
			funcs := testFunc.FindAllStringSubmatchIndex(src, -1)
			for i, fn := range funcs {
				name := src[fn[2]:fn[3]]
				if !pattern.MatchString(name) {
					continue
				}
				selected = append(selected, name)
				end := len(src)
				if i+1 < len(funcs) {
					end = funcs[i+1][0]
				}
				if fm := figure.FindStringSubmatch(src[fn[0]:end]); fm != nil {
					figures = append(figures, name)
					line := "    " + filepath.Base(f) + ":1: " + fm[1]
					assert.Regexp(t, keep, line, "%s: the grep drops the figure of %s", b, name)
				}
				assert.Regexp(t, keep, "--- PASS: "+name+" (1.00s)", "%s: the grep drops the verdict of %s", b, name)
			}
		}
		assert.NotEmpty(t, figures, "%s: -run '%s' selects no test of %s that prints a committed / delivered figure (selected: %v)", b, m[1], pkg, selected)
		assert.Regexp(t, keep, "ok  \tgithub.com/b2131a45/eventkit/"+strings.Trim(pkg, "./")+"\t12.345s", "%s: the grep drops go test's ok line", b)
	}
	ciRuns(t, b, "go test -race -count=1 ./...")
}

// runNodePublish: docs/interop.md's "$ node publish.js" and what it
// prints, "…" standing for anything. It runs in examples/node with the
// packages npm ci --prefix internal/interop/node installs (at the versions
// examples/node/package.json pins, which internal/interop/node checks) and
// AMQP_URL at a vhost of the test's own.
func runNodePublish(t *testing.T, b block) {
	if _, err := exec.LookPath("node"); err != nil {
		testenv.Unavailable(t, "Node.js", err)
	}
	modules, err := filepath.Abs(filepath.Join(repoRoot, "internal", "interop", "node", "node_modules"))
	require.NoError(t, err)
	for _, m := range []string{"amqplib", "cloudevents"} {
		if _, err := os.Stat(filepath.Join(modules, m, "package.json")); err != nil {
			testenv.Unavailable(t, "node_modules (npm ci --prefix internal/interop/node)", err)
		}
	}
	lines := strings.SplitN(b.text, "\n", 2)
	require.Len(t, lines, 2, "%s: the command, then what it prints", b)
	command, ok := strings.CutPrefix(lines[0], "$ ")
	require.True(t, ok, "%s: the first line is the command, after \"$ \"", b)
	require.Equal(t, "node publish.js", command, "%s: the runner node-publish runs publish.js", b)
	want := strings.TrimSuffix(lines[1], "\n")
	require.NotEmpty(t, want, "%s: what it prints", b)

	code, out, errOut := sh(t, "examples/node", command, "NODE_PATH="+modules, "AMQP_URL="+testenv.AMQPVhost(t))
	require.Equal(t, 0, code, "%s: %q exited %d: %s", b, command, code, errOut)
	parts := strings.Split(want, "…")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	assert.Regexp(t, `^`+strings.Join(parts, `.*`)+`\n$`, out, "%s: what %s printed is not what the page shows (… is anything)", b, command)
}
