package docs

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
)

// lineProcess is a README command line run with bash in the repository
// root, in a process group of its own (so that an interrupt reaches the
// program go run started), its standard output read line by line.
type lineProcess struct {
	cmd    *exec.Cmd
	lines  chan string // closed when standard output ends
	exited chan error
	stderr *testenv.Buffer // written by exec's goroutine
}

// startLines starts line with env; ctx bounds its life.
func startLines(t *testing.T, ctx context.Context, line string, env []string) *lineProcess {
	t.Helper()
	p := &lineProcess{
		cmd:    exec.CommandContext(ctx, "bash", "-c", "exec "+line),
		lines:  make(chan string, 64),
		exited: make(chan error, 1),
		stderr: &testenv.Buffer{},
	}
	var err error
	p.cmd.Dir, err = filepath.Abs(repoRoot)
	require.NoError(t, err)
	p.cmd.Env = env
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := p.cmd.StdoutPipe()
	require.NoError(t, err)
	p.cmd.Stderr = p.stderr
	require.NoError(t, p.cmd.Start())
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.exited <- p.cmd.Wait()
	}()
	return p
}

// interrupt sends SIGINT to the process group, as Ctrl-C does.
func (p *lineProcess) interrupt() { _ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT) }

// stopped interrupts the process and checks that what it printed after
// that is want and that it exited before ctx ended. go run exits 1 when its
// program was interrupted, whatever the program's status (it got the
// signal too): the program's own last words are what count.
func (p *lineProcess) stopped(t *testing.T, ctx context.Context, want ...string) {
	t.Helper()
	p.interrupt()
	var rest []string
	for l := range p.lines {
		rest = append(rest, l)
	}
	assert.Equal(t, want, rest, "after the interrupt; stderr:\n%s", p.stderr)
	select {
	case err := <-p.exited:
		var exit *exec.ExitError
		if err != nil {
			assert.ErrorAs(t, err, &exit, p.stderr.String())
		}
	case <-ctx.Done():
		t.Errorf("%s did not stop on SIGINT", p.cmd.Args[len(p.cmd.Args)-1])
	}
}
