// Package redact keeps secrets (passwords from connection URLs) out of error
// messages and log lines.
package redact

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
)

// Mask replaces a secret wherever it would have appeared.
const Mask = "xxxxx"

// Secrets is a set of strings that must never be shown. The zero value holds
// no secret and changes nothing.
type Secrets struct {
	list []string
}

// New returns the set of the given secrets, with their URL-escaped forms.
// Empty strings are ignored.
func New(secrets ...string) Secrets {
	var s Secrets
	seen := map[string]bool{}
	add := func(v string) {
		if v != "" && !seen[v] {
			seen[v] = true
			s.list = append(s.list, v)
		}
	}
	for _, v := range secrets {
		add(v)
		add(url.QueryEscape(v))
		add(url.PathEscape(v))
		add(url.UserPassword("", v).String()[1:]) // userinfo escaping, without the leading ":"
	}
	// Replace longer secrets first, so that one secret containing another is
	// masked whole.
	for i := range s.list {
		for j := i + 1; j < len(s.list); j++ {
			if len(s.list[j]) > len(s.list[i]) {
				s.list[i], s.list[j] = s.list[j], s.list[i]
			}
		}
	}
	return s
}

// Empty reports whether the set holds no secret.
func (s Secrets) Empty() bool { return len(s.list) == 0 }

// shortSecret is the length under which a secret is masked only where it
// stands alone: a password "x" is not in "Exception".
const shortSecret = 6

// String returns v with every secret replaced by Mask: everywhere for a
// secret of shortSecret bytes or more, and for a shorter one wherever it is
// not part of a longer run of letters and digits.
func (s Secrets) String(v string) string {
	for _, secret := range s.list {
		if len(secret) >= shortSecret {
			v = strings.ReplaceAll(v, secret, Mask)
			continue
		}
		v = replaceAlone(v, secret)
	}
	return v
}

// replaceAlone masks the occurrences of secret not adjacent to a letter or
// digit.
func replaceAlone(v, secret string) string {
	var b strings.Builder
	for {
		i := strings.Index(v, secret)
		if i < 0 {
			b.WriteString(v)
			return b.String()
		}
		end := i + len(secret)
		alone := (i == 0 || !isWordByte(v[i-1])) && (end == len(v) || !isWordByte(v[end]))
		b.WriteString(v[:i])
		if alone {
			b.WriteString(Mask)
		} else {
			b.WriteString(secret)
		}
		v = v[end:]
	}
}

func isWordByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// Error returns err unchanged when its message holds no secret, and
// otherwise an error whose message has the secrets masked. The result wraps
// err, so errors.Is and errors.As still see the original chain.
func (s Secrets) Error(err error) error {
	if err == nil || s.Empty() {
		return err
	}
	msg := err.Error()
	clean := s.String(msg)
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// Logger returns a logger that masks the secrets in messages and attribute
// values before they reach l's handler. A nil l gives a logger that discards.
func (s Secrets) Logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	if s.Empty() {
		return l
	}
	return slog.New(&handler{next: l.Handler(), secrets: s})
}

type handler struct {
	next    slog.Handler
	secrets Secrets
}

func (h *handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	clean := slog.NewRecord(r.Time, r.Level, h.secrets.String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		clean.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, clean)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = h.attr(a)
	}
	return &handler{next: h.next.WithAttrs(clean), secrets: h.secrets}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(name), secrets: h.secrets}
}

func (h *handler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.secrets.String(v.String()))
	case slog.KindGroup:
		group := v.Group()
		clean := make([]any, len(group))
		for i, g := range group {
			clean[i] = h.attr(g)
		}
		return slog.Group(a.Key, clean...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok && err != nil {
			return slog.String(a.Key, h.secrets.String(err.Error()))
		}
		return slog.String(a.Key, h.secrets.String(fmt.Sprint(v.Any())))
	default:
		return slog.Attr{Key: a.Key, Value: v}
	}
}

// URL returns raw with the password of its userinfo masked. It also works on
// strings that url.Parse rejects, such as a Kafka broker list, so it is safe
// to use in the error that reports such a string.
func URL(raw string) string {
	rest := raw
	prefix := ""
	if i := strings.Index(raw, "://"); i >= 0 {
		prefix, rest = raw[:i+3], raw[i+3:]
	}
	end := len(rest)
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		end = i
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 || !strings.Contains(rest[:at], ":") {
		// A password with an unescaped '?' or '#' (or a user name with
		// one) makes the authority end early; mask up to the last '@'
		// rather than show it. This can mask more than a password.
		if last := strings.LastIndex(rest, "@"); last > at {
			at = last
		}
	}
	if at < 0 {
		return raw
	}
	userinfo := rest[:at]
	colon := strings.Index(userinfo, ":")
	if colon < 0 {
		return raw
	}
	return prefix + userinfo[:colon+1] + Mask + rest[at:]
}
