// Package urlopt reads a transport's options from URL query parameters and
// rejects the ones it does not know, so that a typo is an error and not a
// silently ignored setting.
package urlopt

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Options consumes query parameters. Use the typed readers for every option
// the transport knows, Pass for those handed on to a driver, then Err.
type Options struct {
	values url.Values
	known  []string
	pass   url.Values
	err    error
}

// New returns Options over q. q is not modified.
func New(q url.Values) *Options {
	return &Options{values: q, pass: url.Values{}}
}

func (o *Options) take(name string) (string, bool) {
	o.known = append(o.known, name)
	vs, ok := o.values[name]
	if !ok {
		return "", false
	}
	if len(vs) != 1 {
		o.fail(fmt.Errorf("option %q is given %d times", name, len(vs)))
		return "", false
	}
	return vs[0], true
}

func (o *Options) fail(err error) {
	if o.err == nil {
		o.err = err
	}
}

func (o *Options) invalid(name, value, want string) {
	o.fail(fmt.Errorf("invalid value %s for option %q: want %s", show(value), name, want))
}

// hidden replaces an option name or value that may hold a secret.
const hidden = "(not shown: it may hold a password; percent-encode special characters in the user and password)"

// show quotes an option value for an error, unless it contains '@': then
// it is most likely the rest of a user:password@host whose password had an
// unescaped '?' or '#', and showing it would show the password.
func show(value string) string {
	if strings.Contains(value, "@") {
		return hidden
	}
	return strconv.Quote(value)
}

// plainName reports whether an option name is an identifier, safe to show.
func plainName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' && r != '-' && r != '.' {
			return false
		}
	}
	return true
}

// Duration reads a Go duration ("250ms", "5s") into dst when present.
func (o *Options) Duration(name string, dst *time.Duration) {
	v, ok := o.take(name)
	if !ok {
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		o.invalid(name, v, "a positive duration such as 500ms or 5s")
		return
	}
	*dst = d
}

// Int reads a positive integer into dst when present.
func (o *Options) Int(name string, dst *int) {
	v, ok := o.take(name)
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		o.invalid(name, v, "a positive integer")
		return
	}
	*dst = n
}

// Bool reads true/false (also 1/0) into dst when present.
func (o *Options) Bool(name string, dst *bool) {
	v, ok := o.take(name)
	if !ok {
		return
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		o.invalid(name, v, "true or false")
		return
	}
	*dst = b
}

// String reads a value into dst when present. When choices are given the
// value must be one of them.
func (o *Options) String(name string, dst *string, choices ...string) {
	v, ok := o.take(name)
	if !ok {
		return
	}
	if len(choices) > 0 && !slices.Contains(choices, v) {
		o.invalid(name, v, "one of "+strings.Join(choices, ", "))
		return
	}
	*dst = v
}

// Pass accepts the named options without reading them; Passed returns them.
func (o *Options) Pass(names ...string) {
	for _, name := range names {
		o.known = append(o.known, name)
		if vs, ok := o.values[name]; ok {
			o.pass[name] = vs
		}
	}
}

// Passed returns the options accepted by Pass that are present.
func (o *Options) Passed() url.Values { return o.pass }

// Err returns the first invalid value, or an error naming the first unknown
// option and listing the known ones.
func (o *Options) Err() error {
	if o.err != nil {
		return o.err
	}
	names := make([]string, 0, len(o.values))
	for name := range o.values {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(o.known, name) {
			known := slices.Clone(o.known)
			slices.Sort(known)
			shown := strconv.Quote(name)
			if !plainName(name) {
				shown = hidden
			}
			return fmt.Errorf("unknown option %s (known options: %s)", shown, strings.Join(known, ", "))
		}
	}
	return nil
}
