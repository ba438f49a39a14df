package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// redactor removes secrets from everything the console writes.
type redactor struct {
	replacer *strings.Replacer // nil when no secret is long enough
}

// urlPassword matches the password of scheme://user:password@host.
var urlPassword = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s"'<>]*:)([^@\s"'<>]+)(@)`)

func newRedactor(secrets []string) *redactor {
	var pairs []string
	for _, s := range secrets {
		if len(s) < 4 {
			continue
		}
		for _, form := range []string{s, html.EscapeString(s), url.QueryEscape(s), url.PathEscape(s), jsonEscape(s)} {
			pairs = append(pairs, form, "xxxxx")
		}
	}
	r := &redactor{}
	if len(pairs) > 0 {
		r.replacer = strings.NewReplacer(pairs...)
	}
	return r
}

func jsonEscape(s string) string {
	b, _ := json.Marshal(s)
	return strings.Trim(string(b), `"`)
}

// bytes returns b without the secrets.
func (r *redactor) bytes(b []byte) []byte {
	b = urlPassword.ReplaceAll(b, []byte("${1}xxxxx${3}"))
	if r.replacer == nil {
		return b
	}
	return []byte(r.replacer.Replace(string(b)))
}

// string returns s without the secrets.
func (r *redactor) string(s string) string { return string(r.bytes([]byte(s))) }

// RedactURL returns rawURL with its password masked, for display, also when
// the password holds an unescaped '@', '#' or '/' (then url.Parse takes
// part of it for the host or the fragment): when the URL has an '@' after
// its user information, everything up to the last '@' is masked, which may
// mask more than the password, never less.
func RedactURL(rawURL string) string {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return rawURL
	}
	last := strings.LastIndex(rest, "@")
	if last < 0 {
		return rawURL
	}
	if u, err := url.Parse(rawURL); err == nil && u.User != nil && u.Fragment == "" &&
		!strings.Contains(u.Host+u.Path+u.RawQuery, "@") {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return u.String()
		}
		return rawURL
	}
	user, _, hasPassword := strings.Cut(rest[:last], ":")
	if !hasPassword || strings.ContainsAny(user, "/?#") {
		user = ""
	}
	return scheme + "://" + user + ":xxxxx" + rest[last:]
}

// masker replaces the configured fields of JSON payloads and metadata.
type masker struct {
	names map[string]bool // a field name at any depth
	paths map[string]bool // a dotted path from the root
}

func newMasker(fields []string) masker {
	m := masker{names: map[string]bool{}, paths: map[string]bool{}}
	for _, f := range fields {
		f = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(f), "$"), ".")
		switch {
		case f == "":
		case strings.Contains(f, "."):
			m.paths[f] = true
		default:
			m.names[f] = true
		}
	}
	return m
}

func (m masker) active() bool { return len(m.names)+len(m.paths) > 0 }

// key reports whether a metadata key is masked.
func (m masker) key(k string) bool { return m.names[k] || m.paths[k] }

func (m masker) value(v any, path string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, child := range x {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if m.names[k] || m.paths[p] {
				x[k] = "***"
				continue
			}
			x[k] = m.value(child, p)
		}
	case []any:
		for i, child := range x {
			x[i] = m.value(child, path) // arrays do not add to the path
		}
	}
	return v
}

// shown is a bounded, masked, printable rendering of bytes.
type shown struct {
	Text string
	// JSON reports that Text is indented JSON.
	JSON bool
	// Cut is how many bytes were left out; Size the whole size.
	Cut, Size int
	// Note explains what was done, e.g. why nothing is shown.
	Note string
}

// maxParse is the largest payload parsed as JSON (to indent and mask it).
const maxParse = 16 << 20

// payload renders an event payload: indented JSON with the masked fields
// replaced, or the text itself; invalid UTF-8 and control characters are
// replaced, and at most limit bytes are kept.
func (m masker) payload(b []byte, limit int) shown {
	s := shown{Size: len(b)}
	if len(b) == 0 {
		s.Note = "empty"
		return s
	}
	trimmed := bytes.TrimSpace(b)
	if len(b) <= maxParse && len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err == nil && !dec.More() {
			v = m.value(v, "")
			var out bytes.Buffer
			enc := json.NewEncoder(&out)
			enc.SetEscapeHTML(false) // the page escapes
			enc.SetIndent("", "  ")
			if err := enc.Encode(v); err == nil {
				s.JSON = true
				s.Text, s.Cut = cut(printable(strings.TrimRight(out.String(), "\n")), limit)
				return s
			}
		}
	}
	if m.active() {
		s.Note = fmt.Sprintf("%d bytes, not shown: the payload is not JSON, so the masked fields cannot be found in it", len(b))
		return s
	}
	s.Text, s.Cut = cut(printable(string(b[:min(len(b), 4*limit)])), limit)
	s.Cut += max(len(b)-4*limit, 0)
	return s
}

// text renders a string (an error, a stack, a metadata value) bounded.
func text(v string, limit int) shown {
	s := shown{Size: len(v)}
	s.Text, s.Cut = cut(printable(v[:min(len(v), 4*limit)]), limit)
	s.Cut += max(len(v)-4*limit, 0)
	return s
}

// printable replaces invalid UTF-8 and control characters other than
// newline and tab with U+FFFD.
func printable(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		if (r == utf8.RuneError && n <= 1) || isControl(r) {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return b.String()
}

func isControl(r rune) bool { return r != '\n' && r != '\t' && unicode.IsControl(r) }

// cut keeps at most limit bytes of s, on a rune boundary, and says how
// many it left out.
func cut(s string, limit int) (string, int) {
	if len(s) <= limit {
		return s, 0
	}
	end := limit
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end], len(s) - end
}

// oneLine is s on one line, at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(printable(s)), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// kv is one metadata entry as shown.
type kv struct {
	Key   string
	Value shown
}

// metadata renders metadata sorted by key, masked values replaced.
func (m masker) metadata(md map[string]string, limit int) []kv {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]kv, 0, len(keys))
	for _, k := range keys {
		v := md[k]
		if m.key(k) {
			v = "***"
		}
		out = append(out, kv{Key: printable(k), Value: text(v, limit)})
	}
	return out
}
