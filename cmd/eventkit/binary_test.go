package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The built binary: its process exits with the codes run returns, and
// "version" prints what the build recorded ("(devel)", or with VCS
// stamping the pseudo-version and the revision).
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "eventkit")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	missing := "sqlite:" + filepath.Join(t.TempDir(), "missing.db")
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, exitOK, "Usage:\n  eventkit [command]"},
		{[]string{"outbox", "--help"}, exitOK, "Usage:\n  eventkit outbox [command]"},
		{[]string{"outbox", "stats", "--help"}, exitOK, "Usage:\n  eventkit outbox stats [flags]"},
		{[]string{"version"}, exitOK, "eventkit "},
		{[]string{"outbox", "stats", "--db", missing}, exitError, "does not exist"},
		{[]string{"outbox", "stats", "--db", "oracle://h/db"}, exitUsage, "oracle"},
		{[]string{"dlq", "list", "--transport", "mem://", "--topic", "x.dlq"}, exitError, "does not exist"},
		{[]string{"dlq", "list", "--transport", "nope://", "--topic", "x.dlq"}, exitUsage, "unknown scheme"},
		{[]string{"frobnicate"}, exitUsage, "unknown command"},
	} {
		cmd := exec.Command(bin, tt.args...)
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		assert.Equal(t, tt.code, code, "eventkit %s: %s", strings.Join(tt.args, " "), out)
		assert.Contains(t, string(out), tt.want, "eventkit %s", strings.Join(tt.args, " "))
		if tt.args[0] == "version" {
			assert.Regexp(t, `^eventkit (\(devel\)|v\S+)\ngo       go\S* `+runtime.GOOS+"/"+runtime.GOARCH+"\n(revision [0-9a-f]{40}.*\n)?$", string(out))
		}
	}
}
