package urlopt

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestOptions(t *testing.T) {
	t.Parallel()
	q, _ := url.ParseQuery("d=250ms&n=4&b=true&s=drop&sslmode=disable")
	o := New(q)
	var (
		d time.Duration
		n int
		b bool
		s string
	)
	o.Duration("d", &d)
	o.Int("n", &n)
	o.Bool("b", &b)
	o.String("s", &s, "error", "drop")
	o.Pass("sslmode", "application_name")
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
	if d != 250*time.Millisecond || n != 4 || !b || s != "drop" {
		t.Fatalf("got %v %v %v %v", d, n, b, s)
	}
	if got := o.Passed().Encode(); got != "sslmode=disable" {
		t.Fatalf("passed = %q", got)
	}
}

func TestOptionsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ query, want string }{
		{"d=fast", `invalid value "fast" for option "d"`},
		{"d=-1s", `invalid value "-1s" for option "d"`},
		{"n=0", `invalid value "0" for option "n"`},
		{"b=maybe", `invalid value "maybe" for option "b"`},
		{"s=other", `want one of error, drop`},
		{"n=1&n=2", `option "n" is given 2 times`},
		{"typo=1", `unknown option "typo" (known options: b, d, n, s)`},
		// The rest of u:pa?ss@host: never echoed (found by FuzzParseURL).
		{":hunter2@host=1", `unknown option (not shown: it may hold a password`},
		{"d=hunter2@host", `invalid value (not shown: it may hold a password`},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		o := New(q)
		var (
			d time.Duration
			n int
			b bool
			s string
		)
		o.Duration("d", &d)
		o.Int("n", &n)
		o.Bool("b", &b)
		o.String("s", &s, "error", "drop")
		err := o.Err()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tt.query, err, tt.want)
		}
	}
}
