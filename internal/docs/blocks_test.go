package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// repoRoot is the repository root, seen from this package's folder (where
// go test runs the tests).
const repoRoot = "../.."

// marker kinds.
const (
	markFile    = "file"
	markOutput  = "output"
	markRun     = "run"
	markDiagram = "diagram"
	markNotRun  = "not run"
)

// markerLine is a marker: `<!-- file: PATH -->`, `<!-- run: NAME -->`,
// `<!-- not run: REASON -->`, `<!-- diagram -->`…
var markerLine = regexp.MustCompile(`^<!-- (file|output|run|diagram|not run)(?:: (.*?))? -->$`)

// block is a fenced code block of a page, with its marker.
type block struct {
	page       string // "README.md", "docs/interop.md"
	line       int    // of the opening fence, from 1
	lang       string // the info string: "go", "sh", ""
	text       string // the lines between the fences, each with its newline
	kind, arg  string // the marker ("" when there is none) and what follows its colon
	markerLine int    // of the marker, from 1
	before     string // the nearest non-blank line before the fence
}

func (b block) String() string { return b.page + " line " + strconv.Itoa(b.line) }

// pages are README.md and docs/*.md, relative to the repository root.
func pages(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	require.NoError(t, err)
	out := []string{"README.md"}
	for _, d := range docs {
		out = append(out, "docs/"+filepath.Base(d))
	}
	require.Greater(t, len(out), 1, "no docs/*.md")
	return out
}

// allBlocks parses every page, failing on a marker no block follows and on
// a block that is not closed.
func allBlocks(t *testing.T) []block {
	t.Helper()
	var out []block
	for _, p := range pages(t) {
		out = append(out, parsePage(t, p, readRepoFile(t, p))...)
	}
	return out
}

// parsePage returns the fenced blocks of page (``` or ~~~, three or more).
func parsePage(t *testing.T, page string, src []byte) []block {
	t.Helper()
	lines := strings.SplitAfter(string(src), "\n")
	var blocks []block
	before, beforeLine := "", 0 // the nearest non-blank line so far
	pendingMarker := 0          // line of a marker waiting for its block
	for i := 0; i < len(lines); i++ {
		line := strings.TrimRight(lines[i], "\r\n")
		trimmed := strings.TrimLeft(line, " ")
		fence := fenceOf(trimmed)
		if fence == "" {
			if strings.TrimSpace(line) == "" {
				continue
			}
			if pendingMarker > 0 {
				t.Errorf("%s line %d: the marker %q is not followed by a code block (the next non-blank line is line %d)",
					page, pendingMarker, before, i+1)
				pendingMarker = 0
			}
			if markerLine.MatchString(strings.TrimSpace(line)) {
				pendingMarker = i + 1
			}
			before, beforeLine = strings.TrimSpace(line), i+1
			continue
		}
		b := block{page: page, line: i + 1, lang: strings.TrimSpace(strings.TrimLeft(trimmed, fence[:1])), before: before}
		if m := markerLine.FindStringSubmatch(before); m != nil {
			b.kind, b.arg, b.markerLine = m[1], m[2], beforeLine
		}
		pendingMarker = 0
		var text strings.Builder
		closed := false
		for i++; i < len(lines); i++ {
			l := strings.TrimSpace(lines[i])
			if strings.HasPrefix(l, fence) && strings.Trim(l, fence[:1]) == "" {
				closed = true
				break
			}
			text.WriteString(lines[i])
		}
		if !closed {
			t.Fatalf("%s: the block opened at line %d is not closed", page, b.line)
		}
		b.text = text.String()
		blocks = append(blocks, b)
		before, beforeLine = strings.TrimSpace(lines[i]), i+1 // the closing fence: never a marker
	}
	if pendingMarker > 0 {
		t.Errorf("%s line %d: the marker %q is not followed by a code block", page, pendingMarker, before)
	}
	return blocks
}

// fenceOf returns the fence that line opens (``` or ~~~, three or more),
// or "".
func fenceOf(line string) string {
	for _, c := range []string{"`", "~"} {
		n := len(line) - len(strings.TrimLeft(line, c))
		if n >= 3 {
			return strings.Repeat(c, n)
		}
	}
	return ""
}

// TestDocsBlocksAreMarked: every code block of README.md and docs/*.md has
// a marker this package knows, used as it says.
func TestDocsBlocksAreMarked(t *testing.T) {
	t.Parallel()
	blocks := allBlocks(t)
	require.NotEmpty(t, blocks)
	used := map[string][]string{} // runner → blocks
	for _, b := range blocks {
		switch b.kind {
		case "":
			t.Errorf("%s: a ```%s block without a marker (the line before it is %q). Put one on the line before it: "+
				"<!-- run: NAME --> (a runner in internal/docs/shell_test.go runs it), <!-- file: PATH#NAME --> "+
				"(the block is a region of code that runs), <!-- diagram --> (not code), or "+
				"<!-- not run: REASON --> (Docker compose, the benchmark, a long nemesis run, fuzz runs: say what proves it instead)",
				b, b.lang, b.before)
		case markFile:
			assert.NotEmpty(t, b.arg, "%s: <!-- file: --> names no file", b)
		case markOutput:
			// contracts/docs_test.go runs the evolution and compares.
			assert.Equal(t, "docs/contracts.md", b.page, "%s: <!-- output: NAME --> is docs/contracts.md's (contracts/docs_test.go checks it); "+
				"nothing checks it here", b)
			assert.Regexp(t, `^\S+$`, b.arg, "%s: <!-- output: NAME --> names no evolution", b)
		case markRun:
			if _, ok := runners[b.arg]; !ok {
				t.Errorf("%s: <!-- run: %s --> names no runner (runners in internal/docs/shell_test.go: %v)", b, b.arg, runnerNames())
			}
			used[b.arg] = append(used[b.arg], b.String())
		case markDiagram:
			assert.Empty(t, b.arg, "%s: <!-- diagram --> takes no argument", b)
			assert.Empty(t, b.lang, "%s: a diagram is not ```%s code", b, b.lang)
		case markNotRun:
			checkNotRun(t, b)
		}
	}
	for _, name := range runnerNames() {
		assert.Len(t, used[name], 1, "the runner %q runs one block, marked <!-- run: %s -->; marked: %v", name, name, used[name])
	}
}

// notRunKinds are the only things a block may leave unrun, line by line,
// each with the check that the line is still right.
var notRunKinds = []struct {
	what  string
	line  *regexp.Regexp
	check func(t *testing.T, b block, m []string)
}{
	{"Docker compose", regexp.MustCompile(`^docker compose((?: -f \S+)*) up\b`), checkComposeFiles},
	{"a request to a sample service of Docker compose", regexp.MustCompile(`^curl -s (?:-XPOST )?localhost:(8080|8081)/`), nil},
	{"the benchmark (about 30 minutes)", regexp.MustCompile(`^go run \./cmd/eventkit-bench((?: -\S+ \S+)*)$`), checkFlags("cmd/eventkit-bench/main.go")},
	{"a long nemesis run (10 minutes or more)", regexp.MustCompile(`^go run \./cmd/eventkit-nemesis((?: -\S+ \S+)*)$`), checkFlags("cmd/eventkit-nemesis/main.go")},
	{"a 60-second fuzz run", regexp.MustCompile(`^go test -run '\^\$' -fuzz '\^(Fuzz\w+)\$' -fuzztime 60s(?: -fuzzminimizetime \S+)? \./(\S+)/$`), checkFuzzTarget},
}

// checkNotRun: a block left unrun is one of notRunKinds, and its reason
// names what proves it instead: a path of the repository.
func checkNotRun(t *testing.T, b block) {
	t.Helper()
	reason := strings.TrimSpace(b.arg)
	if !assert.NotEmpty(t, reason, "%s: <!-- not run: REASON --> gives no reason", b) {
		return
	}
	proof := false
	for _, w := range strings.FieldsFunc(reason, func(r rune) bool { return strings.ContainsRune(" ,;:()`'\"", r) }) {
		w = strings.TrimRight(w, ".")
		if strings.Contains(w, "/") && exists(w) {
			proof = true
		}
	}
	assert.True(t, proof, "%s: the reason %q names nothing of the repository that proves the block instead (a test, a package: a path that exists)", b, reason)
	for _, c := range commands(b.text) {
		c = norm(c)
		matched := false
		for _, k := range notRunKinds {
			if m := k.line.FindStringSubmatch(c); m != nil {
				matched = true
				if k.check != nil {
					k.check(t, b, m)
				}
				break
			}
		}
		assert.True(t, matched, "%s: %q is left unrun, but <!-- not run --> is only for what cannot run here (%s): "+
			"run it (<!-- run: NAME -->) or show code that runs (<!-- file: … -->)", b, c, notRunWhat())
	}
}

func notRunWhat() string {
	var out []string
	for _, k := range notRunKinds {
		out = append(out, k.what)
	}
	return strings.Join(out, ", ")
}

// checkComposeFiles: the files a docker compose line names exist.
func checkComposeFiles(t *testing.T, b block, m []string) {
	files := strings.Fields(strings.ReplaceAll(m[1], "-f ", ""))
	if len(files) == 0 {
		files = []string{"docker-compose.yml"}
	}
	for _, f := range files {
		assert.True(t, exists(f), "%s: docker compose reads %s, which does not exist", b, f)
	}
}

// checkFlags: the program whose flags main.go defines has the flags the
// line gives it.
func checkFlags(mainGo string) func(t *testing.T, b block, m []string) {
	return func(t *testing.T, b block, m []string) {
		src := string(readRepoFile(t, mainGo))
		for _, f := range strings.Fields(m[1]) {
			if !strings.HasPrefix(f, "-") {
				continue
			}
			defined := regexp.MustCompile(`\b(?:flag|fs)\.\w+\((?:&[\w.]+, )?"` + regexp.QuoteMeta(f[1:]) + `"`).MatchString(src)
			assert.True(t, defined, "%s: %s defines no flag %s", b, mainGo, f)
		}
	}
}

// checkFuzzTarget: the fuzz target exists in the package, with its seed
// corpus (which go test ./... runs).
func checkFuzzTarget(t *testing.T, b block, m []string) {
	target, pkg := m[1], m[2]
	files, err := filepath.Glob(filepath.Join(repoRoot, pkg, "*_test.go"))
	require.NoError(t, err)
	found := false
	for _, f := range files {
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		found = found || regexp.MustCompile(`(?m)^func `+target+`\(f \*testing\.F\)`).Match(src)
	}
	assert.True(t, found, "%s: ./%s/ has no fuzz target %s", b, pkg, target)
	assert.True(t, exists(pkg+"/testdata/fuzz/"+target), "%s: %s has no seed corpus in %s/testdata/fuzz/%s", b, target, pkg, target)
}

// TestDocsShowFiles: every block marked <!-- file: PATH --> or
// <!-- file: PATH#NAME --> is, byte for byte, the file or its region; and
// every region of this package's files is shown by some page.
func TestDocsShowFiles(t *testing.T) {
	t.Parallel()
	shown := map[string]bool{}
	for _, b := range allBlocks(t) {
		if b.kind != markFile {
			continue
		}
		shown[b.arg] = true
		t.Run(b.page+":"+strconv.Itoa(b.line), func(t *testing.T) {
			want := shownText(t, b.arg)
			require.Equal(t, want, b.text, "%s: the block marked <!-- file: %s --> differs from the file; make them equal "+
				"(the region runs: change it, then copy it into the page)", b, b.arg)
		})
	}
	t.Run("every region here is shown", func(t *testing.T) {
		files, err := filepath.Glob("*_test.go")
		require.NoError(t, err)
		for _, f := range files {
			src, err := os.ReadFile(f)
			require.NoError(t, err)
			for _, m := range regexp.MustCompile(`(?m)^\s*// docs:begin (\S+)$`).FindAllStringSubmatch(string(src), -1) {
				ref := "internal/docs/" + f + "#" + m[1]
				assert.True(t, shown[ref], "no page shows the region %s (a block marked <!-- file: %s -->)", ref, ref)
			}
		}
	})
}

// shownText is what a block marked ref must hold: the file, or its region.
func shownText(t *testing.T, ref string) string {
	t.Helper()
	path, name, isRegion := strings.Cut(ref, "#")
	src := string(readRepoFile(t, path))
	if !isRegion {
		return src
	}
	lines := strings.SplitAfter(src, "\n")
	begin, end := -1, -1
	for i, l := range lines {
		switch strings.TrimSpace(l) {
		case "// docs:begin " + name:
			require.Equal(t, -1, begin, "%s: two regions %s", path, name)
			begin = i
		case "// docs:end " + name:
			require.Equal(t, -1, end, "%s: two ends of region %s", path, name)
			end = i
		}
	}
	require.True(t, begin >= 0 && end > begin, "%s: no region %s (// docs:begin %s … // docs:end %s)", path, name, name, name)
	region := lines[begin+1 : end]
	for len(region) > 0 && strings.TrimSpace(region[0]) == "" {
		region = region[1:]
	}
	for len(region) > 0 && strings.TrimSpace(region[len(region)-1]) == "" {
		region = region[:len(region)-1]
	}
	return strings.Join(region, "")
}

// TestParsePage: how the parser reads markers and blocks.
func TestParsePage(t *testing.T) {
	t.Parallel()
	page := "intro\n\n<!-- run: a -->\n```sh\necho a\n```\n```\nafter a block\n```\n\n<!-- diagram -->\n\n~~~~\n```\n~~~~\n" +
		"<!-- not run: why -->\n````go\nx\n````\n"
	blocks := parsePage(t, "p.md", []byte(page))
	require.Len(t, blocks, 4)
	assert.Equal(t, block{page: "p.md", line: 4, lang: "sh", text: "echo a\n", kind: markRun, arg: "a", markerLine: 3, before: "<!-- run: a -->"}, blocks[0])
	assert.Equal(t, "", blocks[1].kind, "the line before is the previous block's fence")
	assert.Equal(t, "```", blocks[1].before)
	assert.Equal(t, markDiagram, blocks[2].kind, "a blank line may separate the marker and the block")
	assert.Equal(t, "```\n", blocks[2].text, "a ~~~~ fence is closed by ~~~~ only")
	assert.Equal(t, []string{markNotRun, "why", "go"}, []string{blocks[3].kind, blocks[3].arg, blocks[3].lang})
}

// commands returns the shell commands of a block as bash reads them: its
// non-blank lines, a line ending in a backslash joined with the next.
func commands(text string) []string {
	var out []string
	cur := ""
	for l := range strings.Lines(text) {
		l = strings.TrimRight(l, "\n")
		if strings.HasSuffix(l, `\`) {
			cur += strings.TrimSuffix(l, `\`)
			continue
		}
		cur += l
		if strings.TrimSpace(cur) != "" {
			out = append(out, cur)
		}
		cur = ""
	}
	return out
}

// norm is a command without its trailing comment and with single spaces,
// to be matched (the command runs as written).
func norm(c string) string { return strings.Join(strings.Fields(stripComment(c)), " ") }

// stripComment removes a trailing shell comment (" # …") from a command:
// the first " #" outside quotes.
func stripComment(c string) string {
	for i := 0; i < len(c); i++ {
		if c[i] == ' ' && strings.HasPrefix(c[i:], " #") && strings.Count(c[:i], "'")%2 == 0 && strings.Count(c[:i], `"`)%2 == 0 {
			return strings.TrimSpace(c[:i])
		}
	}
	return strings.TrimSpace(c)
}

func runnerNames() []string {
	var out []string
	for n := range runners {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func readRepoFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(path)))
	require.NoError(t, err)
	return b
}

// exists reports whether path, relative to the repository root, exists.
func exists(path string) bool {
	_, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(path)))
	return err == nil
}
