package contracts_test

// docs/contracts.md shows code and output that must be real. A line
//
//	<!-- file: PATH#NAME -->
//
// directly before a fenced code block says the block is, byte for byte,
// the lines strictly between "// docs:begin NAME" and "// docs:end NAME"
// of PATH (relative to the repository root), less the blank lines at
// either end (as internal/interop/node checks docs/interop.md). A line
//
//	<!-- output: NAME -->
//
// says the block is what the check prints for evolutions[NAME].

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const repoRoot = ".."

const docsPage = "docs/contracts.md"

var docsMarker = regexp.MustCompile(`^<!-- (file|output): (\S+) -->$`)

type docBlock struct {
	kind, ref string
	line      int
	text      string
}

func TestDocsShowFiles(t *testing.T) {
	t.Parallel()
	page := readRepoFile(t, docsPage)
	blocks := docBlocks(t, page)
	shown := map[string]bool{}
	for _, b := range blocks {
		shown[b.kind+":"+b.ref] = true
		t.Run(b.kind+" "+b.ref, func(t *testing.T) {
			switch b.kind {
			case "file":
				require.Equal(t, shownRegion(t, b.ref), b.text, "%s line %d: the block marked <!-- file: %s --> differs from the file; copy the region into the page", docsPage, b.line, b.ref)
			case "output":
				e, ok := evolutions[b.ref]
				require.True(t, ok, "%s line %d: no evolution %q in evolve_test.go", docsPage, b.line, b.ref)
				require.Equal(t, evolutionOutput(t, e), b.text, "%s line %d: the output of %s differs; copy it into the page", docsPage, b.line, b.ref)
			}
		})
	}
	t.Run("the page shows every region and output", func(t *testing.T) {
		for _, path := range []string{"contracts/evolve_test.go", "contracts/example_test.go"} {
			src := string(readRepoFile(t, path))
			for _, m := range regexp.MustCompile(`(?m)^\s*// docs:begin (\S+)$`).FindAllStringSubmatch(src, -1) {
				require.True(t, shown["file:"+path+"#"+m[1]], "%s shows no block marked <!-- file: %s#%s -->", docsPage, path, m[1])
			}
		}
		for name := range evolutions {
			require.True(t, shown["output:"+name], "%s shows no block marked <!-- output: %s -->", docsPage, name)
		}
	})
}

func docBlocks(t *testing.T, page []byte) []docBlock {
	t.Helper()
	lines := strings.SplitAfter(string(page), "\n")
	var blocks []docBlock
	for i := 0; i < len(lines); i++ {
		m := docsMarker.FindStringSubmatch(strings.TrimRight(lines[i], "\n"))
		if m == nil {
			continue
		}
		b := docBlock{kind: m[1], ref: m[2], line: i + 1}
		require.Less(t, i+1, len(lines), "%s line %d: a marker at the end of the page", docsPage, b.line)
		require.True(t, strings.HasPrefix(lines[i+1], "```"), "%s line %d: the marker is not directly followed by a ``` block", docsPage, b.line)
		var text strings.Builder
		closed := false
		for i += 2; i < len(lines); i++ {
			if strings.TrimRight(lines[i], "\n") == "```" {
				closed = true
				break
			}
			text.WriteString(lines[i])
		}
		require.True(t, closed, "%s line %d: the block is not closed", docsPage, b.line)
		b.text = text.String()
		blocks = append(blocks, b)
	}
	require.NotEmpty(t, blocks)
	return blocks
}

func shownRegion(t *testing.T, ref string) string {
	t.Helper()
	path, name, ok := strings.Cut(ref, "#")
	require.True(t, ok, "%s: a file block must name a region (PATH#NAME)", ref)
	lines := strings.SplitAfter(string(readRepoFile(t, path)), "\n")
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
	require.True(t, begin >= 0 && end > begin, "%s: no region %s", path, name)
	region := lines[begin+1 : end]
	for len(region) > 0 && strings.TrimSpace(region[0]) == "" {
		region = region[1:]
	}
	for len(region) > 0 && strings.TrimSpace(region[len(region)-1]) == "" {
		region = region[:len(region)-1]
	}
	return strings.Join(region, "")
}

func readRepoFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(path)))
	require.NoError(t, err)
	return b
}
