package monitoring

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
)

const (
	rulesFile = "eventkit-rules.yml"
	testsFile = "eventkit-rules.test.yml"
)

// promtool returns the path of promtool: missing, the test skips, or fails
// under CI (.ci/run installs Debian's prometheus package, which has it).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Unavailable(t, "promtool (apt-get install -y prometheus)", err)
	}
	return p
}

func runPromtool(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestRulesCheck(t *testing.T) {
	t.Parallel()
	out, err := runPromtool(t, ".", "check", "rules", rulesFile)
	require.NoError(t, err, out)
	assert.Contains(t, out, "SUCCESS: 6 rules found")
}

func TestRulesUnitTests(t *testing.T) {
	t.Parallel()
	out, err := runPromtool(t, ".", "test", "rules", testsFile)
	require.NoError(t, err, out)
	assert.Contains(t, out, "SUCCESS")
}

// Each rule broken the way a careless edit breaks it makes promtool test
// rules fail, naming the alert: the unit tests check every rule, the lag
// rule first.
func TestBrokenRulesFailTheUnitTests(t *testing.T) {
	t.Parallel()
	rules := readFile(t, rulesFile)
	tests := readFile(t, testsFile)
	for _, m := range []struct{ alert, from, to string }{
		{"EventkitOutboxLagHigh", "(eventkit_outbox_oldest_pending_age_seconds) > 60", "(eventkit_outbox_oldest_pending_age_seconds) > 600"},
		{"EventkitOutboxLagHigh", "(eventkit_outbox_oldest_pending_age_seconds) > 60", "(eventkit_outbox_oldest_pending_age_second) > 60"},
		{"EventkitOutboxLagHigh", "max by (outbox) (eventkit_outbox_oldest_pending_age_seconds)", "eventkit_outbox_oldest_pending_age_seconds"},
		{"EventkitOutboxLagHigh", "        for: 2m\n        labels:\n          severity: warning\n        annotations:\n          summary: \"Outbox {{ $labels.outbox }}: the oldest",
			"        for: 10m\n        labels:\n          severity: warning\n        annotations:\n          summary: \"Outbox {{ $labels.outbox }}: the oldest"},
		{"EventkitOutboxFailedRows", "(eventkit_outbox_failed) > 0", "(eventkit_outbox_failed) > 5"},
		{"EventkitOutboxNoActiveRelay", "(eventkit_outbox_relay_active) == 0", "(eventkit_outbox_relay_active) < 0"},
		{"EventkitOutboxStatsUnreadable", "(eventkit_outbox_up) == 0", "(eventkit_outbox_up) == 1"},
		{"EventkitDeadLettersGrowing", "increase(eventkit_dead_letters_total[10m])) > 0", "increase(eventkit_dead_letters_total[10m])) > 10"},
		{"EventkitHandlerErrorRatioHigh", ") > 0.05", ") > 0.5"},
	} {
		require.Equal(t, 1, strings.Count(rules, m.from), "%q is in %s once", m.from, rulesFile)
		dir := t.TempDir()
		write(t, filepath.Join(dir, rulesFile), strings.Replace(rules, m.from, m.to, 1))
		write(t, filepath.Join(dir, testsFile), tests)
		if out, err := runPromtool(t, dir, "check", "rules", rulesFile); err != nil {
			t.Fatalf("%s → %s: the mutated rules do not load, so this proves nothing: %s", m.from, m.to, out)
		}
		out, err := runPromtool(t, dir, "test", "rules", testsFile)
		assert.Error(t, err, "%s → %s: promtool test rules still passes", m.from, m.to)
		assert.Contains(t, out, "alertname: "+m.alert, "%s → %s", m.from, m.to)
	}
}

// The rules and the dashboard name only metrics package metrics exports
// (the table of metrics/doc.go), and the dashboard has a panel per metric
// family of that table.
func TestExpressionsNameExportedMetrics(t *testing.T) {
	t.Parallel()
	exported := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^//\t(eventkit_\w+)\s+(counter|gauge|histogram)\b`).FindAllStringSubmatch(readFile(t, "../metrics/doc.go"), -1) {
		exported[m[1]] = true
		if m[2] == "histogram" {
			for _, s := range []string{"_bucket", "_count", "_sum"} {
				exported[m[1]+s] = true
			}
		}
	}
	require.Greater(t, len(exported), 15)
	named := regexp.MustCompile(`\beventkit_[a-z_]+`)
	check := func(where, expr string) {
		for _, n := range named.FindAllString(expr, -1) {
			assert.True(t, exported[n], "%s: %s is not a metric package metrics exports", where, n)
		}
	}
	for _, m := range regexp.MustCompile(`(?s)expr: (\|\n.*?\n        for|[^\n]+)`).FindAllStringSubmatch(readFile(t, rulesFile), -1) {
		check(rulesFile, m[1])
	}

	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal([]byte(readFile(t, "grafana-dashboard.json")), &dash))
	require.Equal(t, "eventkit", dash.UID)
	var ids []int
	used := map[string]bool{}
	for _, p := range dash.Panels {
		require.NotEmpty(t, p.Targets, p.Title)
		ids = append(ids, p.ID)
		for _, tg := range p.Targets {
			check("panel "+p.Title, tg.Expr)
			for _, n := range named.FindAllString(tg.Expr, -1) {
				used[strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count")] = true
			}
		}
	}
	slices.Sort(ids)
	assert.Equal(t, len(ids), len(slices.Compact(ids)), "panel ids are unique")
	for n := range exported {
		if !strings.HasSuffix(n, "_bucket") && !strings.HasSuffix(n, "_count") && !strings.HasSuffix(n, "_sum") &&
			n != "eventkit_outbox_up" && n != "eventkit_outbox_published" && n != "eventkit_relay_batch_size" {
			assert.True(t, used[n], "no panel shows %s", n)
		}
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	return string(b)
}

func write(t *testing.T, name, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(name, []byte(content), 0o644))
}
