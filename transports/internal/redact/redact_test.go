package redact

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"amqp://guest:s3cret@host:5672/", "amqp://guest:xxxxx@host:5672/"},
		{"kafka://u:p@h1:9092,h2:9092?tls=true", "kafka://u:xxxxx@h1:9092,h2:9092?tls=true"},
		{"mysql://root@127.0.0.1:3306/test", "mysql://root@127.0.0.1:3306/test"},
		{"postgres://u:pa@ss@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://h/db?email=a@b", "postgres://h/db?email=a@b"},
		{"u:p@host", "u:xxxxx@host"},
		{"mem://", "mem://"},
		// Unescaped '#' or '?' in the userinfo end the authority early:
		// masked anyway (found by FuzzParseURL).
		{"amqp://u:pa#ss@host/", "amqp://u:xxxxx@host/"},
		{"amqp://u:pa?ss@host/?heartbeat=5", "amqp://u:xxxxx@host/?heartbeat=5"},
		{"mem://#:00000000@0", "mem://#:xxxxx@0"},
		{"mem://@#:00000000@0", "mem://@#:xxxxx@0"},
	}
	for _, tt := range tests {
		if got := URL(tt.in); got != tt.want {
			t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestErrorMasksAndUnwraps(t *testing.T) {
	t.Parallel()
	base := errors.New("base")
	err := fmt.Errorf("dial user:p@ss/word@host: %w", base)
	got := New("p@ss/word").Error(err)
	if strings.Contains(got.Error(), "p@ss") || strings.Contains(got.Error(), "word") {
		t.Fatalf("secret in %q", got)
	}
	if !errors.Is(got, base) {
		t.Fatal("redacted error does not wrap the original")
	}
	escaped := New("p@ss/word").Error(errors.New("dsn p%40ss%2Fword"))
	if strings.Contains(escaped.Error(), "%40ss") {
		t.Fatalf("escaped secret in %q", escaped)
	}
	if same := New("zzz").Error(err); same != err {
		t.Fatal("an error without the secret must be returned unchanged")
	}
	if New().Error(err) != err || New("x").Error(nil) != nil {
		t.Fatal("no secrets or nil error must be a no-op")
	}
}

func TestLoggerMasks(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := New("hunter2").Logger(slog.New(slog.NewTextHandler(&buf, nil)))
	l = l.With("url", "amqp://u:hunter2@h")
	l.WithGroup("g").Info("connect hunter2 failed",
		"err", errors.New("auth hunter2"),
		"any", []string{"hunter2"},
		slog.Group("nested", "pw", "hunter2"),
		"n", 3,
	)
	out := buf.String()
	if strings.Contains(out, "hunter2") {
		t.Fatalf("secret logged: %s", out)
	}
	if !strings.Contains(out, "n=3") || !strings.Contains(out, Mask) {
		t.Fatalf("log line lost content: %s", out)
	}
}

func TestShortSecretsAreMaskedWhereTheyStandAlone(t *testing.T) {
	s := New("x")
	for in, want := range map[string]string{
		"Exception (403)":      "Exception (403)",
		"amqp://guest:x@host/": "amqp://guest:" + Mask + "@host/",
		"password x refused":   "password " + Mask + " refused",
		"x":                    Mask,
		"box x-ray":            "box " + Mask + "-ray",
	} {
		if got := s.String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
	if got := New("s3cret!").String("wrongs3cret!x"); got != "wrong"+Mask+"x" {
		t.Errorf("a long secret is masked everywhere: %q", got)
	}
}
