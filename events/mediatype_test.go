package events

import (
	"mime"
	"strings"
	"testing"
)

// mediaType gives what mime.ParseMediaType gives for a value that parses,
// and the trimmed, lower-case type of one that does not, without parsing
// the parameters.
func TestMediaType_AsParseMediaType(t *testing.T) {
	for _, v := range []string{
		"application/json", "Application/JSON", "  application/json  ", "application/json; charset=utf-8",
		"application/cloudevents+json;charset=UTF-8", "text/plain; charset", "application/json; =x",
		"application/json;;", "not a type", "", ";", " ; a=b", "APPLICATION/X-PROTOBUF ; proto=a.B",
		"application/json\t", "application/json ;charset=\"utf-8\"",
	} {
		want, _, err := mime.ParseMediaType(v)
		if err != nil {
			base, _, _ := strings.Cut(v, ";")
			want = strings.ToLower(strings.TrimSpace(base))
		}
		if got := mediaType(v); got != want {
			t.Errorf("mediaType(%q) = %q, want %q", v, got, want)
		}
		if !isMediaType(v, strings.ToUpper(want)) {
			t.Errorf("isMediaType(%q, %q) = false", v, strings.ToUpper(want))
		}
	}
}
