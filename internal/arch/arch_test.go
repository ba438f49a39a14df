// Package arch holds the test that keeps eventkit's package layering, as
// docs/architecture.md draws it: imports go downwards only.
package arch

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/b2131a45/eventkit"

// allowed lists, for each library package, the eventkit packages it may
// import (a trailing "/" allows a whole subtree). Programs (cmd/…,
// examples/…), tests and internal/interop may import anything.
var allowed = map[string][]string{
	"events":                      {},
	"internal/tracing":            {"events"},
	"internal/testenv":            {},
	"internal/kafkatest":          {},
	"internal/faultproxy":         {},
	"internal/sample":             {"events", "cqrs", "forwarder", "middleware", "metrics", "health", "contracts", "transports", "internal/dburl"},
	"internal/dburl":              {"transports/sql", "internal/dburl/sqlitedriver"},
	"internal/dburl/sqlitedriver": {},
	"transports":                  {"transports/", "events"},
	"transports/amqp":             {"events", "transports/internal/"},
	"transports/kafka":            {"events", "transports/internal/"},
	"transports/sql":              {"events", "transports/internal/"},
	"transports/memory":           {"events", "transports/internal/"},
	"transports/transporttest":    {"events", "internal/testenv"},
	"middleware":                  {"events", "internal/tracing"},
	"cqrs":                        {"events", "middleware", "internal/tracing"},
	"forwarder":                   {"cqrs", "events", "internal/tracing"},
	"metrics":                     {"forwarder", "middleware"},
	"console":                     {"forwarder", "middleware", "health", "transports"},
	"monitoring":                  {},
	"contracts":                   {"events"},
	"contracts/contracttest":      {"contracts", "events"},
	"health":                      {},
	"logging":                     {},
}

func TestLayering(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		pkg := strings.TrimPrefix(strings.TrimPrefix(fields[0], module), "/")
		if strings.HasPrefix(pkg, "cmd/") || strings.HasPrefix(pkg, "examples/") ||
			strings.HasPrefix(pkg, "internal/interop") || strings.HasPrefix(pkg, "internal/arch") || pkg == "internal/docs" ||
			strings.HasPrefix(pkg, "transports/internal/") {
			continue
		}
		rules, ok := allowed[pkg]
		if !ok {
			t.Errorf("package %s is not in docs/architecture.md's map (nor in this test's): add it to both", pkg)
			continue
		}
		seen[pkg] = true
		for _, imp := range fields[1:] {
			dep, ours := strings.CutPrefix(imp, module+"/")
			if !ours || permitted(dep, rules) {
				continue
			}
			t.Errorf("%s imports %s, which the layering does not allow (see docs/architecture.md)", pkg, dep)
		}
	}
	for pkg := range allowed {
		if !seen[pkg] {
			t.Errorf("package %s is in the map but not in the module", pkg)
		}
	}
}

func permitted(dep string, rules []string) bool {
	for _, r := range rules {
		if dep == r || (strings.HasSuffix(r, "/") && strings.HasPrefix(dep, r)) {
			return true
		}
	}
	return false
}
